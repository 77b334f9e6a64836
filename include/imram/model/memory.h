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

#include <memory>

namespace imram {

// Which columns of W_o and W_g a product takes: those acting on the query or on the context.
enum class MemoryColumns { Query, Context };

// Where the CPU has AVX-512, products_into multiplies with imram's own kernel, which reads the
// weights of a side as [W_o,x ; W_g,x]^T cut into panels of 32 columns (8 MB at d = 1,024 for
// each side). A cache keeps them while the weights are unchanged (same tensors, same version:
// an optimiser step or a loaded checkpoint makes them anew); a model hands one to every unit it
// gives out (ImramModelImpl), so that they are laid out once, not once per query.
class MemoryPanelCache;
std::shared_ptr<MemoryPanelCache> make_memory_panel_cache();

struct MemoryDistillation {
  torch::nn::Linear linear{nullptr};  // W_o, b_o: the authors' linear_t2i / linear_i2t
  torch::nn::Linear gate{nullptr};    // W_g, b_g: the authors' gate_t2i / gate_i2t
  // Null: the panels are laid out for each product (the same numbers, more work).
  std::shared_ptr<MemoryPanelCache> panel_cache = {};

  // [W_o,q q + b_o ; W_g,q q + b_g]: (..., d) -> (..., 2d)
  torch::Tensor query_half(const torch::Tensor& query) const;
  // [b_o ; b_g] (2d): the bias of the query half.
  torch::Tensor query_bias() const;
  // [W_o,c c ; W_g,c c]: (..., d) -> (..., 2d), no bias.
  torch::Tensor context_half(const torch::Tensor& context) const;
  // Without gradients (with them it throws: LibTorch cannot record a product written into
  // existing rows): out (rows, 2d) = [rows W_o,x^T | rows W_g,x^T] for x the query or the
  // context columns, or out += that when accumulating, both halves written in place from views
  // of the weights (out may be a view with rows 2d apart), by BLAS or, where the CPU has
  // AVX-512, by imram's own kernel from the cached panels (above).
  void products_into(MemoryColumns columns, const torch::Tensor& rows, torch::Tensor& out, bool accumulate) const;
  // g from the summed pre-activations [o_pre ; g_pre] (..., 2d): (..., d).
  torch::Tensor gate_values(const torch::Tensor& preactivation) const;
  // q' from q and the summed pre-activations [o_pre ; g_pre] (..., 2d):
  // update(q, query_half(q) + context_half(c)) is the unit applied to q and the attended c.
  torch::Tensor update(const torch::Tensor& query, const torch::Tensor& preactivation) const;
};

}  // namespace imram
