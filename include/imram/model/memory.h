#pragma once
// The memory distillation unit of IMRAM: after each attention step the query is refined by a
// gated memory that mixes the previous query with the attended context.
//   g   = sigmoid(W_g [q; c] + b_g)
//   o   = tanh(W_o [q; c] + b_o)
//   q'  = g * q + (1 - g) * o
// Both layers act on the concatenation [q; c], so W [q; c] = W_q q + W_c c splits into a query
// half and a context half. The context half is linear in c, and c = sum_i alpha_i C_i, so
// W_c c = sum_i alpha_i (W_c C_i): it can be computed once per context item and mixed with
// the attention weights (see engine/matching.cpp), which is what makes the engine fast.
#include <torch/nn/modules/linear.h>

namespace imram {

struct MemoryDistillation {
  torch::nn::Linear linear{nullptr};  // W_o, b_o: the authors' linear_t2i / linear_i2t
  torch::nn::Linear gate{nullptr};    // W_g, b_g: the authors' gate_t2i / gate_i2t

  // [W_o,q q + b_o ; W_g,q q + b_g]: (..., d) -> (..., 2d)
  torch::Tensor query_half(const torch::Tensor& query) const;
  // query_half(q) = q query_weight()^T + query_bias(): [W_o,q ; W_g,q] (2d, d), [b_o ; b_g] (2d).
  torch::Tensor query_weight() const;
  torch::Tensor query_bias() const;
  // [W_o,c c ; W_g,c c]: (..., d) -> (..., 2d), no bias; context_half(c) = c context_weight()^T.
  torch::Tensor context_half(const torch::Tensor& context) const;
  torch::Tensor context_weight() const;
  // g from the summed pre-activations [o_pre ; g_pre] (..., 2d): (..., d).
  torch::Tensor gate_values(const torch::Tensor& preactivation) const;
  // q' from q and the summed pre-activations [o_pre ; g_pre] (..., 2d):
  // update(q, query_half(q) + context_half(c)) is the unit applied to q and the attended c.
  torch::Tensor update(const torch::Tensor& query, const torch::Tensor& preactivation) const;
};

}  // namespace imram
