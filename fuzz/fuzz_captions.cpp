// {split}_caps.txt: lines, CR/LF, empty lines, bytes that are not UTF-8.
#include "fuzz_input.h"
#include "imram/data/captions.h"
#include "imram/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = imram::fuzz::write_input("caps.txt", data, size);
  try {
    for (const auto& caption : imram::read_captions(path)) {
      bool replaced = true;
      (void)imram::valid_utf8(caption, &replaced);
      if (replaced) __builtin_trap();  // read_captions hands out valid UTF-8 only
    }
  } catch (const imram::Error&) {
  }
  return 0;
}
