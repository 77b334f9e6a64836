#include "imram/model/memory.h"

#include <torch/torch.h>

namespace imram {

namespace {
torch::Tensor split_linear(const torch::nn::Linear& layer, const torch::Tensor& query,
                           const torch::Tensor& attended) {
  const auto d = query.size(-1);
  const auto& w = layer->weight;
  return torch::matmul(query, w.narrow(1, 0, d).t()) +
         torch::nn::functional::linear(attended, w.narrow(1, d, d), layer->bias);
}
}  // namespace

torch::Tensor MemoryDistillation::forward(const torch::Tensor& query,
                                          const torch::Tensor& attended) const {
  const auto g = torch::sigmoid(split_linear(gate, query, attended));
  const auto o = torch::tanh(split_linear(linear, query, attended));
  return g * query + (1 - g) * o;
}

}  // namespace imram
