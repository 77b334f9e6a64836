#pragma once
// The memory distillation unit of IMRAM: after each attention step the query is refined by a
// gated memory that mixes the previous query with the attended context.
//   g   = sigmoid(W_g [q; c] + b_g)
//   o   = tanh(W_o [q; c] + b_o)
//   q'  = g * q + (1 - g) * o
#include <torch/nn/modules/linear.h>

namespace imram {

struct MemoryDistillation {
  torch::nn::Linear linear{nullptr};  // W_o, b_o: the authors' linear_t2i / linear_i2t
  torch::nn::Linear gate{nullptr};    // W_g, b_g: the authors' gate_t2i / gate_i2t

  // q and c broadcast against each other (..., n_q, d). W [q; c] is computed as W_q q + W_c c,
  // which is exact and lets a per-item q meet per-pair c without materialising the concatenation.
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& attended) const;
};

}  // namespace imram
