#include "imram/features/preprocessing.h"

#include <nlohmann/json.hpp>

#include "imram/image/picture.h"

namespace imram {

nlohmann::json Preprocessing::to_json() const {
  return {{"resize", "stretch"}, {"width", width}, {"height", height}, {"scale", "1/255"},
          {"mean", mean},        {"std", std},     {"channels", "RGB"}};
}

void preprocess_picture(const cv::Mat& rgb, const Preprocessing& preprocessing, float* out) {
  const cv::Mat sized = resize_picture(rgb, preprocessing.width, preprocessing.height);
  const std::size_t plane = std::size_t(preprocessing.width) * std::size_t(preprocessing.height);
  for (int y = 0; y < sized.rows; ++y) {
    const auto* row = sized.ptr<unsigned char>(y);
    for (int x = 0; x < sized.cols; ++x) {
      const std::size_t at = std::size_t(y) * std::size_t(sized.cols) + std::size_t(x);
      for (int c = 0; c < 3; ++c)
        out[std::size_t(c) * plane + at] =
            (float(row[3 * x + c]) / 255.0f - preprocessing.mean[c]) / preprocessing.std[c];
    }
  }
}

}  // namespace imram
