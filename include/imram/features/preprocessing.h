#pragma once
// What a backbone is fed: every picture stretched to one size (so that a grid cell is the same
// share of every picture, and boxes stay fractions of the original), scaled to [0, 1], then
// normalised per channel. The defaults are torchvision's ImageNet statistics. Recorded beside the
// features (`{split}_features.json`): features are only comparable under the same preprocessing.
#include <array>
#include <string>

#include <nlohmann/json_fwd.hpp>
#include <opencv2/core/mat.hpp>

namespace imram {

struct Preprocessing {
  int width = 224;
  int height = 224;
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};  // RGB
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};

  nlohmann::json to_json() const;
  bool operator==(const Preprocessing& other) const {
    return width == other.width && height == other.height && mean == other.mean && std == other.std;
  }
};

// `rgb`: CV_8UC3 in RGB order. Writes 3 x height x width floats (planar, channel first) to `out`:
// (value / 255 - mean) / std, the same float operations as the PyTorch recipe in docs/features.md.
void preprocess_picture(const cv::Mat& rgb, const Preprocessing& preprocessing, float* out);

}  // namespace imram
