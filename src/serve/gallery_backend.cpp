#include <torch/torch.h>

#include "imram/data/precomp_dataset.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/search/gallery.h"
#include "imram/serve/backend.h"

namespace imram {

namespace {

std::vector<BackendHit> to_backend_hits(const std::vector<SearchHit>& hits) {
  std::vector<BackendHit> out;
  for (const auto& hit : hits) out.push_back({hit.index, hit.score});
  return out;
}

class GalleryBackend : public SearchBackend {
 public:
  GalleryBackend(const std::string& model_dir, const std::string& data_dir, const std::string& split,
                 const std::string& cache_dir, const std::string& device)
      : model_(load_model(model_dir, parse_device(device))),
        split_(PrecompSplit::open(data_dir, split)),
        gallery_(model_, split_, model_dir, cache_dir) {}

  std::vector<BackendHit> search_images(const std::string& text, std::int64_t top) override {
    return to_backend_hits(gallery_.search_images(text, top));
  }
  std::vector<BackendHit> search_captions(std::int64_t image, std::int64_t top) override {
    return to_backend_hits(gallery_.search_captions(image, top));
  }
  Explanation explain(std::int64_t image, const std::string& caption) override {
    return explain_pair(model_, split_.image_features(image), split_.num_regions(), caption);
  }
  std::int64_t num_images() const override { return split_.num_images(); }
  const std::vector<std::string>& captions() const override { return split_.captions(); }
  std::int64_t image_of_caption(std::int64_t caption) const override { return split_.image_of_caption(caption); }
  std::string split_name() const override { return split_.name(); }
  nlohmann::ordered_json info() const override {
    return {{"model", to_json(model_.config())},
            {"gallery", {{"split", split_.name()},
                         {"images", split_.num_images()},
                         {"captions", split_.num_captions()},
                         {"regions", split_.num_regions()}}},
            {"index", "exhaustive"},
            {"device", c10::str(model_.net->parameters().front().device())}};
  }

 private:
  Model model_;
  PrecompSplit split_;
  Gallery gallery_;
};

}  // namespace

std::unique_ptr<SearchBackend> open_gallery_backend(const std::string& model_dir, const std::string& data_dir,
                                                    const std::string& split, const std::string& cache_dir,
                                                    const std::string& device) {
  return std::make_unique<GalleryBackend>(model_dir, data_dir, split, cache_dir, device);
}

}  // namespace imram
