// libFuzzer target: the restricted unpickler on arbitrary bytes, with torch.save's persistent-id
// resolver, so that storage and tensor references are reached too. Anything but an imram::Error
// (a crash, a sanitizer report, a hang, an allocation past -malloc_limit_mb) is a finding.
#include <cstddef>
#include <cstdint>

#include "imram/data/pickle.h"
#include "imram/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  imram::PickleDocument document;
  std::size_t offset = 0;
  try {
    // A legacy checkpoint is several pickles in a row: read until the input ends or fails.
    while (offset < size) {
      imram::read_pickle(document, data, size, &offset, "fuzz", [](imram::PickleDocument& doc, imram::PickleRef pid) {
        imram::PickleStorage storage;
        storage.dtype = "Float";
        storage.key = std::to_string(pid);
        return doc.add_storage(storage);
      });
    }
  } catch (const imram::Error&) {
  }
  return 0;
}
