#include "imram/model/memory.h"

#include <torch/torch.h>

#include <array>
#include <mutex>

#include "imram/error.h"
#include "imram/util/instruction_set.h"
#include "memory_product.h"

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

// [W_o,x ; W_g,x]^T in panels: (ceil(2d / 32), d, 32), panel p holding output columns 32 p ..
// 32 p + 31, zero past 2d.
torch::Tensor column_panels(const MemoryDistillation& memory, MemoryColumns columns) {
  torch::NoGradGuard no_grad;
  const auto joined = torch::cat({columns_of(memory.linear, columns), columns_of(memory.gate, columns)}, 0);
  const auto width = joined.size(0), depth = joined.size(1);
  const auto panels = (width + kMemoryPanelWidth - 1) / kMemoryPanelWidth;
  auto padded = torch::zeros({panels * kMemoryPanelWidth, depth}, joined.options());
  padded.narrow(0, 0, width).copy_(joined);
  return padded.view({panels, kMemoryPanelWidth, depth}).transpose(1, 2).contiguous();
}

// Whether imram's own product runs: AVX-512, float32 weights, rows and outputs on the CPU, each
// row's values adjacent (anything else goes to BLAS, which also reports what does not fit).
bool own_product_runs(const MemoryDistillation& memory, const torch::Tensor& rows, const torch::Tensor& out) {
  const auto on_cpu_float = [](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.dim() == 2 &&
           (t.size(1) <= 1 || t.stride(1) == 1);
  };
  const auto& weight = memory.linear->weight;
  const auto d = weight.size(0);
  return simd::instruction_set() == simd::InstructionSet::Avx512f && on_cpu_float(weight) &&
         on_cpu_float(memory.gate->weight) && on_cpu_float(rows) && on_cpu_float(out) && rows.size(0) > 0 &&
         rows.size(1) == d && out.size(0) == rows.size(0) && out.size(1) == 2 * d;
}

}  // namespace

class MemoryPanelCache {
 public:
  torch::Tensor panels(const MemoryDistillation& memory, MemoryColumns columns) {
    const Key key{identity(memory.linear->weight), identity(memory.gate->weight)};
    std::lock_guard<std::mutex> lock(mutex_);
    auto& entry = entries_[columns == MemoryColumns::Query ? 0 : 1];
    if (!entry.panels.defined() || !(entry.key == key)) entry = {key, column_panels(memory, columns)};
    return entry.panels;
  }

 private:
  struct Identity {
    const void* tensor = nullptr;
    const void* data = nullptr;
    std::int64_t version = 0;
    bool operator==(const Identity& other) const {
      return tensor == other.tensor && data == other.data && version == other.version;
    }
  };
  struct Key {
    Identity linear, gate;
    bool operator==(const Key& other) const { return linear == other.linear && gate == other.gate; }
  };
  struct Entry {
    Key key;
    torch::Tensor panels;
  };
  static Identity identity(const torch::Tensor& weight) {
    return {weight.unsafeGetTensorImpl(), weight.data_ptr(), weight._version()};
  }
  std::mutex mutex_;
  std::array<Entry, 2> entries_;
};

std::shared_ptr<MemoryPanelCache> make_memory_panel_cache() { return std::make_shared<MemoryPanelCache>(); }

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
  if (own_product_runs(*this, rows, out)) {
    const auto panels = panel_cache ? panel_cache->panels(*this, columns) : column_panels(*this, columns);
    memory_panel_products(rows.data_ptr<float>(), rows.size(0), rows.stride(0), d, panels.data_ptr<float>(), 2 * d,
                          out.data_ptr<float>(), out.stride(0), accumulate);
    return;
  }
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
