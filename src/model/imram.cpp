#include "imram/model/imram.h"

#include <torch/torch.h>

#include "imram/error.h"

namespace imram {

ImramModelImpl::ImramModelImpl(const ModelConfig& model_config) : config(model_config) {
  config.validate();
  img_enc = register_module("img_enc", ImageEncoder(config));
  txt_enc = register_module("txt_enc", TextEncoder(config));
  const auto d = config.embed_size;
  linear_t2i = register_module("linear_t2i", torch::nn::Linear(2 * d, d));
  gate_t2i = register_module("gate_t2i", torch::nn::Linear(2 * d, d));
  linear_i2t = register_module("linear_i2t", torch::nn::Linear(2 * d, d));
  gate_i2t = register_module("gate_i2t", torch::nn::Linear(2 * d, d));
  // Registered last, so that the authors' parameters draw the same initial values either way.
  if (config.global_head > 0) global_head = register_module("global_head", GlobalHead(d, config.global_head, config.global_pooling));
}

EncodedImages ImramModelImpl::encode_images(const torch::Tensor& features,
                                            const torch::Tensor& region_mask) {
  if (features.dim() != 3 || features.size(2) != config.img_dim)
    throw Error("image features must be (images, regions, " + std::to_string(config.img_dim) +
                "), got " + c10::str(features.sizes()));
  const auto device = img_enc->parameters().front().device();
  return {img_enc->forward(features.to(device, torch::kFloat32)),
          region_mask.defined() ? region_mask.to(device, torch::kBool) : torch::Tensor()};
}

EncodedCaptions ImramModelImpl::encode_captions(const torch::Tensor& ids,
                                                const torch::Tensor& lengths) {
  const auto cpu_lengths = lengths.to(torch::kCPU, torch::kInt64);
  check_caption_batch(ids, cpu_lengths, config.vocab_size, "captions");
  const auto device = txt_enc->parameters().front().device();
  return {txt_enc->forward(ids.to(device, torch::kInt64), cpu_lengths), cpu_lengths};
}

}  // namespace imram
