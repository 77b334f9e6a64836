#pragma once
// One split of a precomputed ("precomp") dataset as SCAN/IMRAM distribute them:
// `{split}_ims.npy` (or IMRAM's `{split}_feat.npy`), float32 (images, regions, features),
// memory-mapped, and `{split}_caps.txt`, 5 captions per image in image order (or 1:1).
#include <cstdint>
#include <string>
#include <vector>

#include "imram/data/npy.h"

namespace imram {

// A split is a plain name, the prefix of its files in the dataset directory ({split}_ims.npy,
// ...): letters, digits, '_', '-' and '.', not first, at most 100 characters. Anything else
// (a path, an empty name) would read or write outside the directory; throws Error naming it.
void require_split_name(const std::string& split);

class PrecompSplit {
 public:
  static PrecompSplit open(const std::string& dir, const std::string& split);

  const std::string& name() const { return split_; }
  const std::string& features_path() const { return features_.path(); }
  const std::string& captions_path() const { return captions_path_; }
  std::int64_t num_images() const { return features_.dim(0); }
  std::int64_t num_regions() const { return features_.dim(1); }
  std::int64_t feature_dim() const { return features_.dim(2); }
  std::int64_t num_captions() const { return static_cast<std::int64_t>(captions_.size()); }
  int captions_per_image() const { return captions_per_image_; }
  std::int64_t image_of_caption(std::int64_t caption) const { return caption / captions_per_image_; }

  // Throws naming the features file unless its regions have `img_dim` features (a model's):
  // read as img_dim floats a region, other data would be read past its end.
  void require_feature_dim(std::int64_t img_dim) const;

  const NpyArray& features() const { return features_; }
  // Region features of one image: num_regions() x feature_dim() floats, memory-mapped.
  const float* image_features(std::int64_t image) const;
  const std::vector<std::string>& captions() const { return captions_; }

 private:
  std::string split_;
  NpyArray features_;
  std::string captions_path_;
  std::vector<std::string> captions_;
  int captions_per_image_ = 5;
};

// `{dir}/{split}_ims.npy` if present, else `{dir}/{split}_feat.npy`; throws naming both.
std::string find_features_file(const std::string& dir, const std::string& split);

}  // namespace imram
