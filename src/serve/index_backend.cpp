#include <torch/torch.h>

#include <chrono>

#include "imram/data/precomp_dataset.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/search/gallery.h"
#include "imram/search/index_dir.h"
#include "imram/search/results.h"
#include "imram/search/search_params.h"
#include "imram/search/world_search.h"
#include "imram/serve/backend.h"
#include "imram/util/stopwatch.h"

namespace imram {

namespace {

// A shard's searcher of `side` with its part of the lists of the whole gallery of `gallery_items`
// (search/index_dir.h): what every rank of a sharded search searches with.
std::shared_ptr<const Searcher> shard_searcher(const GalleryIndex& shard, GallerySide side, const SearchLists& lists,
                                               std::int64_t gallery_items) {
  const auto resolved =
      resolve_lists(lists, gallery_items, stored_values_per_item(*shard.store(), side), shard.has_codes(side));
  return shard.searcher(side, resolved.shortlist, resolved.prefilter, resolved.step1, gallery_items);
}

class IndexBackend : public SearchBackend {
 public:
  // `world`: rank 0 of a world that holds the index's shards, rank r shard r; searches go to
  // every rank (search/world_search.h).
  IndexBackend(std::shared_ptr<const GalleryIndex> index, const SearchLists& lists, std::string name,
               std::unique_ptr<SearchWorld> world = nullptr)
      : index_(std::move(index)),
        model_(index_->model()),
        name_(std::move(name)),
        kind_(lists.shortlist != 0 ? "two-stage" : "exhaustive"),
        world_(std::move(world)) {
    const auto image_lists = index_->resolved_lists(GallerySide::Images, lists);
    const auto caption_lists = index_->resolved_lists(GallerySide::Captions, lists);
    image_shortlist_ = image_lists.shortlist;
    caption_shortlist_ = caption_lists.shortlist;
    if (world_) {
      const auto& own = *index_->shards().front();
      images_ = world_->searcher(shard_searcher(own, GallerySide::Images, lists, index_->num_images()));
      captions_ = world_->searcher(shard_searcher(own, GallerySide::Captions, lists, index_->num_captions()));
    } else {
      images_ = index_->searcher(GallerySide::Images, image_lists);
      captions_ = index_->searcher(GallerySide::Captions, caption_lists);
    }
  }

  std::vector<BackendAnswer> search_images(const std::vector<std::string>& texts, std::int64_t top,
                                           const SearchParams& params) override {
    const Stopwatch encoding;
    std::vector<EncodedQuery> queries;
    for (const auto& text : texts) queries.push_back(index_->text_query(text));
    return answers(*images_, std::move(queries), std::vector<std::int64_t>(texts.size(), -1), top, image_shortlist_,
                   encoding, params);
  }
  std::vector<BackendAnswer> search_captions(const std::vector<std::int64_t>& images, std::int64_t top,
                                             const SearchParams& params) override {
    const Stopwatch encoding;
    std::vector<EncodedQuery> queries;
    for (const auto image : images) queries.push_back(index_->image_query(image));
    return answers(*captions_, std::move(queries), images, top, caption_shortlist_, encoding, params);
  }
  nlohmann::ordered_json answer_json(const BackendAnswer& answer) const override {
    auto out = search_answer_json(*index_, answer.query, answer.query_image, answer.answer);
    // An answer comes from every shard or is not given (a lost shard is a 503).
    if (answer.shards > 0) out["coverage"] = {{"shards", answer.shards}, {"answered", answer.shards}};
    return out;
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
  std::string unavailable() const override { return world_ ? world_->lost() : std::string(); }
  void finish() override {
    if (world_) world_->stop();
  }
  nlohmann::ordered_json info() const override {
    auto info = base_info();
    if (!index_->shards().empty())
      info["shards"] = {{"shards", index_->shards().size()}, {"ranks", world_ ? world_->shards() : 1}};
    return info;
  }

 private:
  nlohmann::ordered_json base_info() const {
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
            {"exact_store", index_->store()->exact()},
            {"device", c10::str(model_.net->parameters().front().device())}};
  }

  std::vector<BackendAnswer> answers(const Searcher& searcher, std::vector<EncodedQuery> queries,
                                     const std::vector<std::int64_t>& query_images, std::int64_t top,
                                     std::int64_t shortlist, const Stopwatch& encoding,
                                     const SearchParams& params) const {
    const double encode_ms = encoding.milliseconds();
    SearchStats stats;
    auto hits = searcher.search_many(queries, top, &stats, params);
    const auto shards = index_->shards().size();  // shards() copies the list of shards
    std::vector<BackendAnswer> out(queries.size());
    for (std::size_t q = 0; q < queries.size(); ++q)
      out[q] = {std::move(queries[q]), query_images[q], SearchAnswer{std::move(hits[q]), stats, encode_ms, shortlist},
                shards};
    return out;
  }

  std::shared_ptr<const GalleryIndex> index_;
  Model model_;  // shares the index's weights; explain() needs a mutable handle
  std::string name_, kind_;
  std::unique_ptr<SearchWorld> world_;
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
  return std::make_unique<IndexBackend>(gallery.shared_index(), SearchLists{0, 0, 0}, split);
}

std::unique_ptr<SearchBackend> open_index_backend(const std::string& index_dir, const std::string& device,
                                                  const SearchLists& lists) {
  auto index = GalleryIndex::open(index_dir, parse_device(device));
  // As imram search: an index without a shortlist is refused for two-stage search (the error
  // says to give --shortlist 0), never searched exhaustively behind the user's back.
  return std::make_unique<IndexBackend>(std::move(index), lists, index_dir);
}

ShardLayout shards_for_world(const std::string& index_dir, int ranks) {
  if (!is_sharded_index_dir(index_dir))
    throw Error(index_dir + ": not a sharded index; a world of ranks serves one shard each (index build --shards)");
  auto layout = GalleryIndex::shard_layout(index_dir);
  if (layout.images.shards() != ranks)
    throw Error(index_dir + ": has " + std::to_string(layout.images.shards()) + " shards for " + std::to_string(ranks) +
                " ranks; one rank serves each shard");
  return layout;
}

ShardedServing open_for_world(const std::string& index_dir, const std::string& device, int rank, int ranks) {
  ShardedServing serving;
  serving.layout = shards_for_world(index_dir, ranks);
  const auto on = parse_device(device);
  serving.index = rank == 0 ? GalleryIndex::open(index_dir, on) : GalleryIndex::open_shard(index_dir, rank, on);
  serving.index_dir = index_dir;
  return serving;
}

std::unique_ptr<SearchBackend> world_backend(const ShardedServing& serving, const SearchLists& lists,
                                             const WorldShare& world) {
  auto search_world = std::make_unique<SearchWorld>(world, serving.layout.images, serving.layout.captions);
  return std::make_unique<IndexBackend>(serving.index, lists, serving.index_dir, std::move(search_world));
}

void answer_for_shard(const ShardedServing& serving, const SearchLists& lists, const WorldShare& world) {
  const auto& shard = *serving.index;
  const auto images = shard_searcher(shard, GallerySide::Images, lists, serving.layout.images.total());
  const auto captions = shard_searcher(shard, GallerySide::Captions, lists, serving.layout.captions.total());
  answer_world_searches(world, *images, *captions, shard.model().net->parameters().front().device());
}

}  // namespace imram
