#pragma once
// The input size of a backbone on the command line (imram features, imram index add --images).
#include <sstream>
#include <string>

#include "imram/error.h"

namespace imram::cli {

// "224" (a square) or "320x240" (width x height), sides 8 to 4096.
inline void parse_picture_size(const std::string& text, int& width, int& height) {
  int w = 0, h = 0;
  char x = 0, extra = 0;
  std::istringstream in(text);
  if ((in >> w) && !(in >> x)) {
    h = w;
  } else if (!(x == 'x' && (in >> h) && !(in >> extra))) {
    throw Error("--size must be N or WxH, got '" + text + "'");
  }
  if (w < 8 || h < 8 || w > 4096 || h > 4096) throw Error("--size sides must be 8 to 4096, got '" + text + "'");
  width = w;
  height = h;
}

}  // namespace imram::cli
