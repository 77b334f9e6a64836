#include "imram/model/memory.h"

#include <torch/torch.h>

namespace imram {

namespace {
// Rows of W_o stacked on rows of W_g, restricted to the columns acting on the query (part 0)
// or on the context (part 1).
torch::Tensor stacked_half(const MemoryDistillation& memory, int part) {
  const auto d = memory.linear->weight.size(0);
  return torch::cat({memory.linear->weight.narrow(1, part * d, d), memory.gate->weight.narrow(1, part * d, d)});
}
}  // namespace

torch::Tensor MemoryDistillation::query_weight() const { return stacked_half(*this, 0); }

torch::Tensor MemoryDistillation::query_bias() const { return torch::cat({linear->bias, gate->bias}); }

torch::Tensor MemoryDistillation::query_half(const torch::Tensor& query) const {
  return torch::nn::functional::linear(query, query_weight(), query_bias());
}

torch::Tensor MemoryDistillation::context_weight() const { return stacked_half(*this, 1); }

torch::Tensor MemoryDistillation::context_half(const torch::Tensor& context) const {
  return torch::matmul(context, context_weight().t());
}

torch::Tensor MemoryDistillation::gate_values(const torch::Tensor& preactivation) const {
  const auto d = preactivation.size(-1) / 2;
  return torch::sigmoid(preactivation.narrow(-1, d, d));
}

torch::Tensor MemoryDistillation::update(const torch::Tensor& query, const torch::Tensor& preactivation) const {
  const auto d = query.size(-1);
  const auto o = torch::tanh(preactivation.narrow(-1, 0, d));
  const auto g = gate_values(preactivation);
  return g * query + (1 - g) * o;
}

}  // namespace imram
