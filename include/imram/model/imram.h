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

struct EncodedImages {
  torch::Tensor regions;      // (N, R, d)
  torch::Tensor region_mask;  // (N, R) bool, true = real region; undefined = all real
};

struct EncodedCaptions {
  torch::Tensor words;    // (M, L, d), padded positions 0
  torch::Tensor lengths;  // (M) int64 on the CPU, <start>/<end> included
};

struct ImramModelImpl : torch::nn::Module {
  explicit ImramModelImpl(const ModelConfig& config);

  EncodedImages encode_images(const torch::Tensor& features,
                              const torch::Tensor& region_mask = {});
  EncodedCaptions encode_captions(const torch::Tensor& ids, const torch::Tensor& lengths);

  MemoryDistillation text_memory() const { return {linear_t2i, gate_t2i}; }   // words query regions
  MemoryDistillation image_memory() const { return {linear_i2t, gate_i2t}; }  // regions query words

  ModelConfig config;
  ImageEncoder img_enc{nullptr};
  TextEncoder txt_enc{nullptr};
  // Every model carries the memory layers of both directions (as the authors' state_dict does).
  torch::nn::Linear linear_t2i{nullptr}, gate_t2i{nullptr};
  torch::nn::Linear linear_i2t{nullptr}, gate_i2t{nullptr};
  // Only when config.global_head > 0 (two-stage search); not part of the authors' model.
  GlobalHead global_head{nullptr};
};
TORCH_MODULE(ImramModel);

}  // namespace imram
