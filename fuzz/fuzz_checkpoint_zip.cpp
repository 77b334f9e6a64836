// libFuzzer target: read_checkpoint on inputs that start as a zip (>= 1.6) torch.save file: the
// central-directory check, LibTorch's PyTorchStreamReader, data.pkl and the data/<key> records.
// The local-header signature is forced so that every input reaches the zip container.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "imram/error.h"
#include "imram/model/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  std::vector<std::uint8_t> bytes(data, data + size);
  std::memcpy(bytes.data(), "PK\x03\x04", 4);
  try {
    imram::read_checkpoint(bytes.data(), bytes.size(), "fuzz");
  } catch (const imram::Error&) {
  }
  return 0;
}
