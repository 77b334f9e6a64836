#pragma once
// Token ids -> contextualised word embeddings: embedding table, GRU over the real tokens only
// (packed, so padding never enters either direction), directions averaged, l2norm.
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/rnn.h>

#include "imram/model/config.h"

namespace imram {

struct TextEncoderImpl : torch::nn::Module {
  explicit TextEncoderImpl(const ModelConfig& config);
  // ids (M, L) int64, lengths (M) int64 with <start>/<end> counted -> (M, L, d), padding 0.
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& lengths);

  std::int64_t embed_size;
  bool bidirectional;
  bool l2normalize;
  torch::nn::Embedding embed{nullptr};
  torch::nn::GRU rnn{nullptr};
};
TORCH_MODULE(TextEncoder);

// Throws imram::Error unless ids are in [0, vocab_size) and 1 <= lengths <= ids.size(1).
void check_caption_batch(const torch::Tensor& ids, const torch::Tensor& lengths, std::int64_t vocab_size,
                         const std::string& source);

}  // namespace imram
