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

TensorStore::TensorStore(EncodedImages images, EncodedCaptions captions)
    : images_{images.regions.to(torch::kCPU, torch::kFloat32).contiguous(),
              images.region_mask.defined() ? images.region_mask.cpu() : torch::Tensor()},
      captions_{captions.words.to(torch::kCPU, torch::kFloat32).contiguous(), captions.lengths.to(torch::kCPU, torch::kInt64)} {}

EncodedImages TensorStore::images(const std::vector<std::int64_t>& ids) const {
  check_item_ids(ids, num_images(), "image");
  const auto index = torch::tensor(ids, torch::kInt64);
  return {images_.regions.index_select(0, index),
          images_.region_mask.defined() ? images_.region_mask.index_select(0, index) : torch::Tensor()};
}

EncodedCaptions TensorStore::captions(const std::vector<std::int64_t>& ids) const {
  check_item_ids(ids, num_captions(), "caption");
  const auto index = torch::tensor(ids, torch::kInt64);
  const auto lengths = captions_.lengths.index_select(0, index);
  const auto longest = ids.empty() ? 1 : lengths.max().item<std::int64_t>();
  return {captions_.words.index_select(0, index).narrow(1, 0, longest), lengths};
}

}  // namespace imram
