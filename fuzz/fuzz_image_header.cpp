// Picture headers read before any decoder runs (the pixel limit's input) and the JPEG end check:
// arbitrary bytes must give a size or an imram::Error, and a size must be positive.
#include <cstdlib>

#include "imram/error.h"
#include "imram/image/image_header.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)imram::jpeg_is_complete(data, size);
  try {
    const auto header = imram::read_image_header(data, size);
    if (header.width <= 0 || header.height <= 0) std::abort();
  } catch (const imram::Error&) {
  }
  return 0;
}
