#include "imram/search/index_pictures.h"

#include <filesystem>

#include "imram/data/image_info.h"
#include "imram/data/npy.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/search/index_dir.h"
#include "imram/util/atomic_file.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

// The features' dataset lives only as long as the addition: a kill leaves it as an abandoned
// temporary sibling, which the next build or picture addition of the index removes.
class TemporaryDataset {
 public:
  explicit TemporaryDataset(const std::string& beside) : dir_(fresh_temporary_directory(beside)) {}
  ~TemporaryDataset() { remove_tree(dir_); }
  TemporaryDataset(const TemporaryDataset&) = delete;
  TemporaryDataset& operator=(const TemporaryDataset&) = delete;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

}  // namespace

PicturesAdded add_pictures_to_index(const std::string& index_dir, const std::string& pictures, FeatureOptions options,
                                    const std::string& device, const FeatureLog& warn) {
  // "INDEX/" must not put the temporary inside the index.
  auto index = fs::path(index_dir).lexically_normal();
  if (!index.has_filename()) index = index.parent_path();
  auto writer = IndexWriter::append(index.string(), options.show_progress, device);
  writer.on_warning(warn);
  const nlohmann::ordered_json source{{"pictures", source_path(pictures)}};
  writer.refuse_held_source(source);
  options.device = parse_device(device);
  options.feature_dim = writer.model_config().img_dim;
  const auto regions = writer.regions_per_image();
  if (options.contract == BackboneContract::Detector) {
    if (options.regions == 0) options.regions = regions > 0 ? int(regions) : FeatureOptions{}.regions;
    if (regions > 0 && options.regions != regions)
      throw Error(options.backbone + ": would keep " + std::to_string(options.regions) +
                  " regions a picture, the index " + index.string() + " holds images of " + std::to_string(regions));
  }
  const auto listed = list_pictures(pictures, warn);
  const TemporaryDataset data(index.string());
  const std::string split = "pictures";
  FeatureSummary summary;
  try {
    summary = extract_features(listed, data.dir(), split, options, warn);
  } catch (const NoUsablePicture&) {
    throw Error(pictures + ": no picture could be used (the warnings above say why); nothing was added");
  }
  if (regions > 0 && summary.regions != regions)
    throw Error(options.backbone + ": gives " + std::to_string(summary.regions) + " regions a picture, the index " +
                index.string() + " holds images of " + std::to_string(regions));
  const auto features = NpyArray::open(summary.features_path);
  writer.add_uncaptioned_images(features, dataset_image_info(data.dir(), split, features.dim(0)), source);
  writer.commit();
  return {summary.rows, summary.skipped};
}

}  // namespace imram
