#pragma once
// The global embedding of an item, for the first stage of two-stage search (docs/index.md): the
// masked mean of the item's encoded fragments (regions or words), through one linear layer per
// modality, l2-normalised. Its cosine is cheap enough for an approximate nearest-neighbour
// index; the exact IMRAM score re-ranks what it finds.
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace imram {

struct EncodedImages;
struct EncodedCaptions;

// Masked means of encoded fragments: (N, R, d) regions (region_mask (N, R) bool or undefined =
// all real) -> (N, d); (M, L, d) words with lengths (M) -> (M, d).
torch::Tensor pool_regions(const EncodedImages& images);
torch::Tensor pool_words(const EncodedCaptions& captions);

struct GlobalHeadImpl : torch::nn::Module {
  GlobalHeadImpl(std::int64_t embed_size, std::int64_t dim);

  // Pooled (N, d) -> l2-normalised (N, dim).
  torch::Tensor embed_pooled_images(const torch::Tensor& pooled);
  torch::Tensor embed_pooled_captions(const torch::Tensor& pooled);
  torch::Tensor embed_images(const EncodedImages& images);
  torch::Tensor embed_captions(const EncodedCaptions& captions);

  torch::nn::Linear image{nullptr}, text{nullptr};
};
TORCH_MODULE(GlobalHead);

}  // namespace imram
