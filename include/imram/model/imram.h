#pragma once
// The IMRAM model: the two encoders and the memory layers of both directions. Scoring pairs is
// the engine's job (engine/scorer.h); the model only encodes items.
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "imram/model/config.h"
#include "imram/model/global_head.h"
#include "imram/model/image_encoder.h"
#include "imram/model/memory.h"
#include "imram/model/text_encoder.h"

namespace imram {

// Encoded items may bring their memory halves: the products of their own fragments with the
// memory units (model/memory.h) that do not depend on the item they are matched with. Images
// are the context of text-IMRAM (words attend to regions) and the query of image-IMRAM, captions
// the reverse. The engine computes what is absent; an index may store them (docs/index.md), so
// that a query spends its time only on the products that depend on the pair.
struct EncodedImages {
  torch::Tensor regions;            // (N, R, d)
  torch::Tensor region_mask;        // (N, R) bool, true = real region; undefined = all real
  torch::Tensor text_halves = {};   // (N, R, 2d) text_memory().context_half(regions), or undefined
  torch::Tensor image_halves = {};  // (N, R, 2d) image_memory().query_half(regions), or undefined
};

struct EncodedCaptions {
  torch::Tensor words;              // (M, L, d), padded positions 0
  torch::Tensor lengths;            // (M) int64 on the CPU, <start>/<end> included
  torch::Tensor text_halves = {};   // (M, L, 2d) text_memory().query_half(words), or undefined
  torch::Tensor image_halves = {};  // (M, L, 2d) image_memory().context_half(words), or undefined
};

struct ImramModelImpl : torch::nn::Module {
  explicit ImramModelImpl(const ModelConfig& config);

  EncodedImages encode_images(const torch::Tensor& features, const torch::Tensor& region_mask = {});
  EncodedCaptions encode_captions(const torch::Tensor& ids, const torch::Tensor& lengths);

  // Sets the memory halves of the directions this model updates a memory in (K > 1), in the
  // layout a store keeps them: [text | image] along the last dimension, as joined_memory_halves.
  void attach_memory_halves(EncodedImages& images) const;
  void attach_memory_halves(EncodedCaptions& captions) const;
  // Floats per fragment that the attached halves take: 2d per direction, 0 when K = 1.
  std::int64_t memory_halves_width() const;
  // The attached halves as one (items, fragments, memory_halves_width()) tensor, and back.
  torch::Tensor joined_memory_halves(const torch::Tensor& text_halves, const torch::Tensor& image_halves) const;
  std::pair<torch::Tensor, torch::Tensor> split_memory_halves(const torch::Tensor& joined) const;

  MemoryDistillation text_memory() const { return {linear_t2i, gate_t2i, text_panels}; }    // words query regions
  MemoryDistillation image_memory() const { return {linear_i2t, gate_i2t, image_panels}; }  // regions query words

  ModelConfig config;
  ImageEncoder img_enc{nullptr};
  TextEncoder txt_enc{nullptr};
  // Every model carries the memory layers of both directions (as the authors' state_dict does).
  torch::nn::Linear linear_t2i{nullptr}, gate_t2i{nullptr};
  torch::nn::Linear linear_i2t{nullptr}, gate_i2t{nullptr};
  // The memory weights as imram's own product reads them (model/memory.h).
  std::shared_ptr<MemoryPanelCache> text_panels = make_memory_panel_cache();
  std::shared_ptr<MemoryPanelCache> image_panels = make_memory_panel_cache();
  // Only when config.global_head > 0 (two-stage search); not part of the authors' model.
  GlobalHead global_head{nullptr};
};
TORCH_MODULE(ImramModel);

}  // namespace imram
