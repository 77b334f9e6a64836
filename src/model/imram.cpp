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
  if (config.global_head > 0)
    global_head = register_module("global_head", GlobalHead(d, config.global_head, config.global_pooling));
}

EncodedImages ImramModelImpl::encode_images(const torch::Tensor& features, const torch::Tensor& region_mask) {
  if (features.dim() != 3 || features.size(2) != config.img_dim)
    throw Error("image features must be (images, regions, " + std::to_string(config.img_dim) + "), got " +
                c10::str(features.sizes()));
  const auto device = img_enc->parameters().front().device();
  return {img_enc->forward(features.to(device, torch::kFloat32)),
          region_mask.defined() ? region_mask.to(device, torch::kBool) : torch::Tensor()};
}

EncodedCaptions ImramModelImpl::encode_captions(const torch::Tensor& ids, const torch::Tensor& lengths) {
  const auto cpu_lengths = lengths.to(torch::kCPU, torch::kInt64);
  check_caption_batch(ids, cpu_lengths, config.vocab_size, "captions");
  const auto device = txt_enc->parameters().front().device();
  return {txt_enc->forward(ids.to(device, torch::kInt64), cpu_lengths), cpu_lengths};
}

namespace {

// The directions whose memory halves exist (a memory is updated only when K > 1), in the order
// a store keeps them: [text | image].
struct HalvesLayout {
  bool text, image;
};

HalvesLayout halves_layout(const ModelConfig& config) {
  const bool memory_steps = config.iteration_steps > 1;
  return {memory_steps && config.uses_text_direction(), memory_steps && config.uses_image_direction()};
}

}  // namespace

std::int64_t ImramModelImpl::memory_halves_width() const {
  const auto layout = halves_layout(config);
  return 2 * config.embed_size * (std::int64_t(layout.text) + std::int64_t(layout.image));
}

void ImramModelImpl::attach_memory_halves(EncodedImages& images) const {
  const auto layout = halves_layout(config);
  if (layout.text) images.text_halves = text_memory().context_half(images.regions);
  if (layout.image) images.image_halves = image_memory().query_half(images.regions);
}

void ImramModelImpl::attach_memory_halves(EncodedCaptions& captions) const {
  const auto layout = halves_layout(config);
  if (layout.text) {
    // Padded positions keep zeros, as a store that keeps only real words gives them back.
    const auto positions = torch::arange(captions.words.size(1), torch::kInt64).unsqueeze(0);
    const auto real = (positions < captions.lengths.unsqueeze(1))
                          .unsqueeze(2)
                          .to(captions.words.device(), captions.words.scalar_type());
    captions.text_halves = text_memory().query_half(captions.words) * real;
  }
  if (layout.image) captions.image_halves = image_memory().context_half(captions.words);
}

torch::Tensor ImramModelImpl::joined_memory_halves(const torch::Tensor& text_halves,
                                                   const torch::Tensor& image_halves) const {
  const auto layout = halves_layout(config);
  std::vector<torch::Tensor> parts;
  if (layout.text) parts.push_back(text_halves);
  if (layout.image) parts.push_back(image_halves);
  for (const auto& part : parts)
    if (!part.defined()) throw Error("the items have no memory halves attached to join");
  return parts.empty() ? torch::Tensor() : torch::cat(parts, -1);
}

std::pair<torch::Tensor, torch::Tensor> ImramModelImpl::split_memory_halves(const torch::Tensor& joined) const {
  if (joined.size(-1) != memory_halves_width())
    throw Error("memory halves of " + std::to_string(joined.size(-1)) + " floats per fragment, the model's are " +
                std::to_string(memory_halves_width()));
  const auto layout = halves_layout(config);
  const auto width = 2 * config.embed_size;
  return {layout.text ? joined.narrow(-1, 0, width) : torch::Tensor(),
          layout.image ? joined.narrow(-1, layout.text ? width : 0, width) : torch::Tensor()};
}

}  // namespace imram
