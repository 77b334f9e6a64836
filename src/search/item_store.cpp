#include "imram/search/item_store.h"

#include <torch/torch.h>

#include "imram/error.h"

namespace imram {

void check_item_ids(const std::vector<std::int64_t>& ids, std::int64_t count, const char* what) {
  for (const auto id : ids)
    if (id < 0 || id >= count)
      throw Error(std::string(what) + " " + std::to_string(id) + ": out of range, the gallery holds " +
                  std::to_string(count));
}

namespace {
[[noreturn]] void no_codes() {
  throw Error("this store keeps no codes of its fragments; rebuild the index with codes (imram index build --codes)");
}
}  // namespace

bool ItemStore::keeps_codes(bool) const { return false; }
torch::Tensor ItemStore::codebook(bool) const { no_codes(); }
CodedItems ItemStore::coded_images(const std::vector<std::int64_t>&) const { no_codes(); }
CodedItems ItemStore::coded_captions(const std::vector<std::int64_t>&) const { no_codes(); }

}  // namespace imram
