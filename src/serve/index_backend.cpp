#include <torch/torch.h>

#include <chrono>

#include "imram/data/precomp_dataset.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/search/gallery.h"
#include "imram/search/index_dir.h"
#include "imram/search/results.h"
#include "imram/search/search_params.h"
#include "imram/serve/backend.h"
#include "imram/util/stopwatch.h"

namespace imram {

namespace {

class IndexBackend : public SearchBackend {
 public:
  IndexBackend(std::shared_ptr<const GalleryIndex> index, std::int64_t shortlist, std::int64_t prefilter,
               std::string name, std::string kind)
      : index_(std::move(index)), model_(index_->model()), name_(std::move(name)), kind_(std::move(kind)) {
    image_shortlist_ = scored_shortlist(shortlist, index_->num_images());
    caption_shortlist_ = scored_shortlist(shortlist, index_->num_captions());
    images_ = index_->searcher(GallerySide::Images, image_shortlist_, prefilter);
    captions_ = index_->searcher(GallerySide::Captions, caption_shortlist_, prefilter);
  }

  std::vector<nlohmann::ordered_json> search_images(const std::vector<std::string>& texts, std::int64_t top,
                                                    const SearchParams& params) override {
    const Stopwatch encoding;
    std::vector<EncodedQuery> queries;
    for (const auto& text : texts) queries.push_back(index_->text_query(text));
    return answers(*images_, queries, std::vector<std::int64_t>(texts.size(), -1), top, image_shortlist_, encoding,
                   params);
  }
  std::vector<nlohmann::ordered_json> search_captions(const std::vector<std::int64_t>& images, std::int64_t top,
                                                      const SearchParams& params) override {
    const Stopwatch encoding;
    std::vector<EncodedQuery> queries;
    for (const auto image : images) queries.push_back(index_->image_query(image));
    return answers(*captions_, queries, images, top, caption_shortlist_, encoding, params);
  }
  Explanation explain(std::int64_t image, const std::string& caption) override {
    return explain_encoded_pair(model_, index_->store()->images({image}).regions, caption);
  }
  std::int64_t num_images() const override { return index_->num_images(); }
  const std::vector<std::string>& captions() const override { return index_->caption_texts(); }
  std::int64_t image_of_caption(std::int64_t caption) const override {
    return index_->captions_per_image() > 0 ? caption / index_->captions_per_image() : -1;
  }
  std::string split_name() const override { return name_; }
  bool described() const override { return index_->described(); }
  ImageInfo image_info(std::int64_t image) const override { return index_->image_info(image); }
  std::string thumbnail(std::int64_t image) const override { return index_->thumbnail(image); }
  nlohmann::ordered_json info() const override {
    return {{"model", to_json(model_.config())},
            {"gallery",
             {{"name", name_},
              {"images", index_->num_images()},
              {"captions", index_->num_captions()},
              {"regions", index_->store()->regions_per_image()}}},
            {"index", kind_},
            {"faiss", index_->faiss_factory()},
            {"shortlist", image_shortlist_},
            {"store", index_->store_dtype()},
            {"device", c10::str(model_.net->parameters().front().device())}};
  }

 private:
  std::vector<nlohmann::ordered_json> answers(const Searcher& searcher, const std::vector<EncodedQuery>& queries,
                                              const std::vector<std::int64_t>& query_images, std::int64_t top,
                                              std::int64_t shortlist, const Stopwatch& encoding,
                                              const SearchParams& params) const {
    const double encode_ms = encoding.milliseconds();
    SearchStats stats;
    auto hits = searcher.search_many(queries, top, &stats, params);
    std::vector<nlohmann::ordered_json> out;
    for (std::size_t q = 0; q < queries.size(); ++q)
      out.push_back(search_answer_json(*index_, queries[q], query_images[q],
                                       SearchAnswer{std::move(hits[q]), stats, encode_ms, shortlist}));
    return out;
  }

  std::shared_ptr<const GalleryIndex> index_;
  Model model_;  // shares the index's weights; explain() needs a mutable handle
  std::string name_, kind_;
  std::shared_ptr<const Searcher> images_, captions_;
  std::int64_t image_shortlist_ = 0, caption_shortlist_ = 0;
};

}  // namespace

std::unique_ptr<SearchBackend> open_gallery_backend(const std::string& model_dir, const std::string& data_dir,
                                                    const std::string& split, const std::string& cache_dir,
                                                    const std::string& device, std::uint64_t cache_limit_bytes) {
  auto model = load_model(model_dir, parse_device(device));
  const auto opened = PrecompSplit::open(data_dir, split);
  const Gallery gallery(model, opened, model_dir, cache_dir, /*show_progress=*/false, cache_limit_bytes);
  return std::make_unique<IndexBackend>(gallery.shared_index(), 0, 0, split, "exhaustive");
}

std::unique_ptr<SearchBackend> open_index_backend(const std::string& index_dir, const std::string& device,
                                                  std::int64_t shortlist, std::int64_t prefilter) {
  auto index = GalleryIndex::open(index_dir, parse_device(device));
  // As imram search: an index without a shortlist is refused for two-stage search (the error
  // says to give --shortlist 0), never searched exhaustively behind the user's back.
  const bool two_stage = shortlist != 0;
  return std::make_unique<IndexBackend>(std::move(index), shortlist, prefilter, index_dir,
                                        two_stage ? "two-stage" : "exhaustive");
}

}  // namespace imram
