#include "imram/model/global_head.h"

#include <torch/torch.h>

#include "imram/model/image_encoder.h"
#include "imram/model/imram.h"

namespace imram {

torch::Tensor pool_regions(const EncodedImages& images) {
  if (!images.region_mask.defined()) return images.regions.mean(1);
  const auto mask = images.region_mask.to(images.regions.dtype()).unsqueeze(-1);
  return (images.regions * mask).sum(1) / mask.sum(1).clamp_min(1);
}

torch::Tensor pool_words(const EncodedCaptions& captions) {
  const auto& words = captions.words;
  const auto lengths = captions.lengths.to(words.device(), torch::kInt64);
  const auto positions = torch::arange(words.size(1), lengths.options()).unsqueeze(0);
  const auto mask = (positions < lengths.unsqueeze(1)).to(words.dtype()).unsqueeze(-1);
  return (words * mask).sum(1) / lengths.to(words.dtype()).clamp_min(1).unsqueeze(-1);
}

GlobalHeadImpl::GlobalHeadImpl(std::int64_t embed_size, std::int64_t dim) {
  image = register_module("image", torch::nn::Linear(embed_size, dim));
  text = register_module("text", torch::nn::Linear(embed_size, dim));
}

torch::Tensor GlobalHeadImpl::embed_pooled_images(const torch::Tensor& pooled) {
  return l2norm(image->forward(pooled), -1);
}

torch::Tensor GlobalHeadImpl::embed_pooled_captions(const torch::Tensor& pooled) {
  return l2norm(text->forward(pooled), -1);
}

torch::Tensor GlobalHeadImpl::embed_images(const EncodedImages& images) {
  return embed_pooled_images(pool_regions(images));
}

torch::Tensor GlobalHeadImpl::embed_captions(const EncodedCaptions& captions) {
  return embed_pooled_captions(pool_words(captions));
}

}  // namespace imram
