// libFuzzer target: read_checkpoint on inputs that start as a legacy (pre-1.6) torch.save file:
// the magic-number, protocol and system-info pickles, the object pickle with its storage
// references, the key list and the raw storages. The first byte is forced to the pickle
// protocol marker so that every input reaches the legacy container.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "imram/error.h"
#include "imram/model/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> bytes(data, data + size);
  if (bytes.empty()) return 0;
  bytes[0] = 0x80;
  try {
    imram::read_checkpoint(bytes.data(), bytes.size(), "fuzz");
  } catch (const imram::Error&) {
  }
  return 0;
}
