#include "imram/model/memory.h"

#include <torch/torch.h>

#include "imram/error.h"

namespace imram {

namespace {
// The columns of `layer`'s weight acting on the query or on the context: a (d, d) view.
torch::Tensor columns_of(const torch::nn::Linear& layer, MemoryColumns columns) {
  const auto d = layer->weight.size(0);
  return layer->weight.narrow(1, columns == MemoryColumns::Query ? 0 : d, d);
}

// [x W_o,x^T (+ b_o) | x W_g,x^T (+ b_g)]: (..., d) -> (..., 2d). With gradients as two
// differentiable products joined; without, written into one tensor (products_into).
torch::Tensor half_products(const MemoryDistillation& memory, MemoryColumns columns, const torch::Tensor& x,
                            bool bias) {
  if (torch::GradMode::is_enabled()) {
    std::vector<torch::Tensor> halves;
    for (const auto* layer : {&memory.linear, &memory.gate})
      halves.push_back(
          torch::nn::functional::linear(x, columns_of(*layer, columns), bias ? (*layer)->bias : torch::Tensor()));
    return torch::cat(halves, -1);
  }
  const auto d = memory.linear->weight.size(0);
  const auto rows = x.reshape({-1, d});
  auto out = torch::empty({rows.size(0), 2 * d}, rows.options());
  if (bias) out.copy_(memory.query_bias().expand({rows.size(0), 2 * d}));
  memory.products_into(columns, rows, out, bias);
  auto sizes = x.sizes().vec();
  sizes.back() = 2 * d;
  return out.view(sizes);
}
}  // namespace

torch::Tensor MemoryDistillation::query_bias() const { return torch::cat({linear->bias, gate->bias}); }

torch::Tensor MemoryDistillation::query_half(const torch::Tensor& query) const {
  return half_products(*this, MemoryColumns::Query, query, true);
}

torch::Tensor MemoryDistillation::context_half(const torch::Tensor& context) const {
  return half_products(*this, MemoryColumns::Context, context, false);
}

void MemoryDistillation::products_into(MemoryColumns columns, const torch::Tensor& rows, torch::Tensor& out,
                                       bool accumulate) const {
  // LibTorch cannot record a product written into existing rows; failing inside it would name
  // mm() and nothing of ours (docs/engine.md#grad-mode).
  if (torch::GradMode::is_enabled())
    throw Error(
        "the memory products written in place (MemoryDistillation::products_into) take no gradients: "
        "call them without autograd, or use query_half/context_half");
  const auto d = linear->weight.size(0);
  std::int64_t first = 0;
  for (const auto* layer : {&linear, &gate}) {
    auto half = out.narrow(1, first, d);
    const auto weight_t = columns_of(*layer, columns).t();
    if (accumulate)
      half.addmm_(rows, weight_t);
    else
      torch::mm_out(half, rows, weight_t);
    first += d;
  }
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
