#pragma once
// Pictures the server shows when an image has none of its own (data/image_info.h).
#include <cstdint>
#include <string>

namespace imram {

// The side of the square the page draws a picture in, and the unit of the boxes the server sends.
inline constexpr double kPictureSize = 300;

// A picture that says there is none, and why.
std::string placeholder_svg(const std::string& message);

// A picture file as the server sends it: its bytes and media type.
struct PictureFile {
  std::string bytes;
  std::string media_type;
};

// Whether `path` may be served as a picture: a regular file (a FIFO or a device would hang a
// worker or never end), of at most `max_bytes`, whose first bytes name a JPEG, PNG, WebP or BMP;
// opened without blocking. Throws imram::Error naming the path and the problem. The check at
// start reads 16 bytes of each file; reading sends the whole file, checked again.
void check_picture_file(const std::string& path, std::int64_t max_bytes);
PictureFile read_picture_file(const std::string& path, std::int64_t max_bytes);

}  // namespace imram
