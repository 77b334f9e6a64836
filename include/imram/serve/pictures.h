#pragma once
// Pictures the server shows when an image has none of its own (data/image_info.h).
#include <cstdint>
#include <string>

namespace imram {

// The side of the square the page draws a picture in, and the unit of the boxes the server sends.
inline constexpr double kPictureSize = 300;

// A picture that says there is none, and why.
std::string placeholder_svg(const std::string& message);

}  // namespace imram
