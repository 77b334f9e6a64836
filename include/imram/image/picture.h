#pragma once
// Pictures from files, as a backbone and a page need them: decoded by OpenCV (libjpeg-turbo,
// libpng, libwebp; docs/features.md says why OpenCV), turned upright by their EXIF orientation,
// and converted to 8-bit RGB whatever they were stored as (grey, grey + alpha, RGBA, CMYK, 16 bits
// a channel; transparent pixels over white). A file that is not a whole picture of a size within
// the limits is an imram::Error naming it and the problem, before any large allocation.
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "imram/image/image_header.h"

namespace imram {

struct PictureLimits {
  // 128 megapixels (a 108 MP phone photo passes); decoded RGB needs 3 bytes a pixel.
  std::int64_t max_pixels = 128'000'000;
  std::int64_t max_file_bytes = kMaxPictureFileBytes;
};

// `min_side`: the smallest side the caller will resize to; a JPEG much larger than that is decoded
// at 1/2, 1/4 or 1/8 scale by libjpeg itself (several times faster, same picture to the eye).
// 0 decodes at full size. The result is CV_8UC3 in RGB order.
cv::Mat read_picture(const std::string& path, const PictureLimits& limits = {}, int min_side = 0);
cv::Mat decode_picture(const unsigned char* data, std::size_t size, const std::string& name,
                       const PictureLimits& limits = {}, int min_side = 0);

// Stretches to width x height: area averaging when shrinking (no aliasing), bilinear when growing.
cv::Mat resize_picture(const cv::Mat& rgb, int width, int height);
// Fits inside a max_side square, keeping the aspect ratio (never enlarges).
cv::Mat fit_picture(const cv::Mat& rgb, int max_side);

std::vector<unsigned char> encode_jpeg(const cv::Mat& rgb, int quality = 85);
// PNG or JPEG by the extension of `path`, written atomically.
void write_picture(const std::string& path, const cv::Mat& rgb);

}  // namespace imram
