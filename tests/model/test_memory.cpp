// The memory unit's split products (model/memory.h) against the unit as the authors write it:
// one linear layer over the concatenation [q; c].
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "imram/model/memory.h"
#include "imram/util/instruction_set.h"

namespace {

imram::MemoryDistillation random_memory(std::int64_t d) {
  return {torch::nn::Linear(2 * d, d), torch::nn::Linear(2 * d, d)};
}

// [W_o [q; c] + b_o ; W_g [q; c] + b_g] in double precision: the whole layers on the concatenation.
torch::Tensor whole_layers(const imram::MemoryDistillation& memory, const torch::Tensor& query,
                           const torch::Tensor& context) {
  const auto joined = torch::cat({query, context}, -1).to(torch::kFloat64);
  std::vector<torch::Tensor> halves;
  for (const auto* layer : {&memory.linear, &memory.gate})
    halves.push_back(torch::nn::functional::linear(joined, (*layer)->weight.to(torch::kFloat64),
                                                   (*layer)->bias.to(torch::kFloat64)));
  return torch::cat(halves, -1);
}

double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

TEST(MemoryDistillation, HalvesAddUpToTheLayersOnTheConcatenation) {
  torch::manual_seed(5);
  const std::int64_t d = 37, rows = 11;
  auto memory = random_memory(d);
  const auto query = torch::randn({rows, d}), context = torch::randn({rows, d});
  const auto want = whole_layers(memory, query, context);
  {
    torch::NoGradGuard no_grad;
    EXPECT_LE(max_difference(memory.query_half(query) + memory.context_half(context), want), 1e-5);
    // Into rows 3d apart (a wider tensor's part), the context's products accumulated on the query's.
    auto wide = torch::full({rows, 3 * d}, 7.0f);
    auto out = wide.narrow(1, d, 2 * d);
    memory.products_into(imram::MemoryColumns::Query, query, out, false);
    memory.products_into(imram::MemoryColumns::Context, context, out, true);
    out.add_(memory.query_bias());
    EXPECT_LE(max_difference(out, want), 1e-5);
    EXPECT_TRUE(wide.narrow(1, 0, d).eq(7.0f).all().item<bool>()) << "wrote outside its rows";
    // Leading dimensions are kept.
    EXPECT_EQ(memory.query_half(query.view({1, rows, d})).sizes(), (std::vector<std::int64_t>{1, rows, 2 * d}));
  }
  // With gradients: the same values, and the gradients of the whole layers.
  const auto split = memory.query_half(query) + memory.context_half(context);
  EXPECT_LE(max_difference(split, want), 1e-5);
  split.pow(2).sum().backward();
  const auto split_grads = torch::cat({memory.linear->weight.grad(), memory.gate->weight.grad()}).clone();
  for (auto* layer : {&memory.linear, &memory.gate}) (*layer)->weight.mutable_grad().zero_();
  const auto joined = torch::cat({query, context}, -1);
  torch::cat({memory.linear(joined), memory.gate(joined)}, -1).pow(2).sum().backward();
  EXPECT_LE(max_difference(split_grads, torch::cat({memory.linear->weight.grad(), memory.gate->weight.grad()})), 1e-3);
}

// Where the CPU has AVX-512 the products are imram's own (model/memory.h): near the exact
// product, every output the same sum whatever rows it is computed with (a query alone and among
// many score alike), and the cached weights follow the layers when they change in place.
TEST(MemoryDistillation, OwnProductIsTheSameForAnyRowsAndFollowsTheWeights) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(9);
  const std::int64_t d = 40, rows = 29;  // 2d = 80 columns: two whole panels of 32 and half of one
  auto memory = random_memory(d);
  memory.panel_cache = imram::make_memory_panel_cache();
  const auto x = torch::randn({rows, d});
  const auto exact = [&] {
    return x.to(torch::kFloat64)
        .mm(torch::cat({memory.linear->weight.narrow(1, d, d), memory.gate->weight.narrow(1, d, d)}, 0)
                .to(torch::kFloat64)
                .t());
  };
  auto together = torch::empty({rows, 2 * d});
  memory.products_into(imram::MemoryColumns::Context, x, together, false);
  EXPECT_LE(max_difference(together, exact()), 1e-5);
  if (imram::simd::instruction_set() == imram::simd::InstructionSet::Avx512f) {
    for (std::int64_t r = 0; r < rows; ++r) {
      auto alone = torch::empty({1, 2 * d});
      memory.products_into(imram::MemoryColumns::Context, x.narrow(0, r, 1), alone, false);
      EXPECT_TRUE(torch::equal(alone[0], together[r])) << "row " << r;
    }
  }
  memory.linear->weight.mul_(-2.0f);
  memory.products_into(imram::MemoryColumns::Context, x, together, false);
  EXPECT_LE(max_difference(together, exact()), 1e-5) << "the cached weights did not follow the layer";
  memory.gate->weight = torch::randn({d, 2 * d});  // another tensor in the layer
  memory.products_into(imram::MemoryColumns::Context, x, together, false);
  EXPECT_LE(max_difference(together, exact()), 1e-5) << "the cached weights did not follow the layer";
}

}  // namespace
