#include "imram/data/precomp_dataset.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>

#include "imram/data/captions.h"
#include "imram/error.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

// A name as one line of an error message: control bytes (a tab, a line break, a NUL) as \xNN.
std::string printable(const std::string& name) {
  std::string out;
  for (const char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<unsigned char>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string find_features_file(const std::string& dir, const std::string& split) {
  const std::string ims = (fs::path(dir) / (split + "_ims.npy")).string();
  if (fs::exists(ims)) return ims;
  const std::string feat = (fs::path(dir) / (split + "_feat.npy")).string();
  if (fs::exists(feat)) return feat;
  throw Error(dir + ": split '" + split + "' has no features (looked for " + split + "_ims.npy and " + split +
              "_feat.npy)");
}

void require_split_name(const std::string& split) {
  const bool plain = !split.empty() && split.size() <= 100 && split.front() != '.' &&
                     std::all_of(split.begin(), split.end(), [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
                     });
  if (!plain)
    throw Error("split '" + printable(split) +
                "': a split is a plain name (letters, digits, '_', '-' and '.', not "
                "first; at most 100 characters)");
}

PrecompSplit PrecompSplit::open(const std::string& dir, const std::string& split) {
  require_split_name(split);
  if (!fs::is_directory(dir)) throw Error(dir + ": dataset directory does not exist");
  PrecompSplit result;
  result.split_ = split;
  result.features_ = NpyArray::open(find_features_file(dir, split));
  result.features_.require_ndim(3);
  result.features_.require_dtype(DType::Float32);
  if (result.num_images() == 0) throw Error(result.features_.path() + ": holds no images");
  if (result.num_regions() == 0 || result.feature_dim() == 0)
    throw Error(result.features_.path() + ": images have no regions or no features, shape " +
                result.features_.shape_string());
  result.captions_path_ = (fs::path(dir) / (split + "_caps.txt")).string();
  if (!fs::exists(result.captions_path_))
    throw Error(result.captions_path_ + ": caption file missing for split '" + split + "'");
  result.captions_ = read_captions(result.captions_path_);
  const auto images = result.num_images();
  const auto captions = result.num_captions();
  if (captions == 5 * images) {
    result.captions_per_image_ = 5;
  } else if (captions == images) {
    result.captions_per_image_ = 1;
  } else {
    throw Error(result.captions_path_ + ": " + std::to_string(captions) + " captions for " + std::to_string(images) +
                " images in " + result.features_.path() + " (expected 5 per image or 1 per image)");
  }
  return result;
}

void PrecompSplit::require_feature_dim(std::int64_t img_dim) const {
  if (feature_dim() != img_dim)
    throw Error(features_path() + ": regions have " + std::to_string(feature_dim()) +
                " features but the model expects img_dim " + std::to_string(img_dim));
}

const float* PrecompSplit::image_features(std::int64_t image) const {
  if (image < 0 || image >= num_images())
    throw Error(features_.path() + ": image index " + std::to_string(image) + " out of range (" +
                std::to_string(num_images()) + " images)");
  return features_.as<float>() + image * num_regions() * feature_dim();
}

}  // namespace imram
