#include "imram/search/item_store.h"

#include <torch/torch.h>

#include <algorithm>

#include "imram/error.h"

namespace imram {

double stored_values_per_item(const ItemStore& store, GallerySide side) {
  const auto d = double(store.embed_size());
  if (side == GallerySide::Images) return double(store.regions_per_image()) * d;
  const auto captions = store.num_captions();
  if (captions == 0) return d;
  // The mean length of up to 1,000 captions spread over the gallery.
  const auto step = std::max<std::int64_t>(1, captions / 1000);
  double words = 0, counted = 0;
  for (std::int64_t id = 0; id < captions; id += step, ++counted) words += double(store.caption_length(id));
  return words / counted * d;
}

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
