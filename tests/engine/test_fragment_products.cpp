// The fragment kernels (engine/fragment_products.h) against LibTorch's products in double
// precision, for shapes that exercise every block and tail of the kernels, float32 and float16
// items; and the orders they promise: an item's products do not depend on the other items of
// the call, a float16 item gives the bits of its float32 widening, a Gram matrix is symmetric.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "imram/engine/fragment_products.h"

namespace {

torch::Tensor exact(const torch::Tensor& t) { return t.to(torch::kFloat64); }

double relative_error(const torch::Tensor& got, const torch::Tensor& want) {
  return ((exact(got) - want).abs().max() / want.abs().max().clamp_min(1e-30)).item<double>();
}

TEST(FragmentProducts, EqualLibTorchsProductsForEveryShape) {
  torch::manual_seed(3);
  for (const auto type : {torch::kFloat32, torch::kHalf})
    for (const std::int64_t m : {1, 3, 4, 7, 14})
      for (const std::int64_t n : {1, 5, 36})
        for (const std::int64_t d : {8, 16, 37, 100}) {
          const std::int64_t B = 3;
          const auto lhs = torch::randn({B, m, d}), one_lhs = torch::randn({1, m, d});
          const auto rhs = torch::randn({B, n, d}).to(type);
          auto out = torch::empty({B, m, n});
          imram::fragment_dots(lhs, rhs, out);
          EXPECT_LE(relative_error(out, torch::bmm(exact(lhs), exact(rhs).transpose(1, 2))), 1e-6)
              << "dots " << m << "x" << n << "x" << d << " " << type;
          imram::fragment_dots(one_lhs, rhs, out);
          EXPECT_LE(relative_error(out, torch::matmul(exact(one_lhs), exact(rhs).transpose(1, 2))), 1e-6)
              << "one lhs " << m << "x" << n << "x" << d;
          auto gram = torch::empty({B, n, n});
          imram::fragment_grams(rhs, gram);
          EXPECT_LE(relative_error(gram, torch::bmm(exact(rhs), exact(rhs).transpose(1, 2))), 1e-6)
              << "gram " << n << "x" << d;
          EXPECT_TRUE(gram.equal(gram.transpose(1, 2)));

          // Values as a wider row's part, as split memory halves are: rows `d + 5` apart.
          const auto values = torch::randn({B, n, d + 5}).to(type).narrow(2, 3, d);
          const auto weights = torch::rand({B, m, n});
          auto weighted = torch::empty({B, m, d});
          imram::weighted_fragments(weights, values, weighted, false);
          const auto want = torch::bmm(exact(weights), exact(values));
          EXPECT_LE(relative_error(weighted, want), 1e-6) << "weighted " << m << "x" << n << "x" << d;
          const auto before = torch::randn({B, m, d});
          auto accumulated = before.clone();
          imram::weighted_fragments(weights, values, accumulated, true);
          EXPECT_LE(relative_error(accumulated, want + exact(before)), 1e-6)
              << "accumulated " << m << "x" << n << "x" << d;
        }
}

TEST(FragmentProducts, AnItemsProductsDependOnItsOwnOperandsOnly) {
  torch::manual_seed(4);
  const std::int64_t B = 5, m = 14, n = 36, d = 100;
  const auto lhs = torch::randn({B, m, d});
  const auto half_rhs = torch::randn({B, n, d}).to(torch::kHalf);
  const auto rhs = half_rhs.to(torch::kFloat32);
  auto together = torch::empty({B, m, n}), from_half = torch::empty({B, m, n});
  imram::fragment_dots(lhs, rhs, together);
  imram::fragment_dots(lhs, half_rhs, from_half);
  EXPECT_TRUE(together.equal(from_half));
  auto grams = torch::empty({B, n, n}), half_grams = torch::empty({B, n, n});
  imram::fragment_grams(rhs, grams);
  imram::fragment_grams(half_rhs, half_grams);
  EXPECT_TRUE(grams.equal(half_grams));
  const auto weights = torch::rand({B, m, n});
  const auto half_values = torch::randn({B, n, 2 * d + 8}).to(torch::kHalf);
  auto weighted = torch::empty({B, m, 2 * d + 8}), weighted_half = torch::empty({B, m, 2 * d + 8});
  imram::weighted_fragments(weights, half_values.to(torch::kFloat32), weighted, false);
  imram::weighted_fragments(weights, half_values, weighted_half, false);
  EXPECT_TRUE(weighted.equal(weighted_half));
  for (std::int64_t b = 0; b < B; ++b) {
    auto alone = torch::empty({1, m, n});
    imram::fragment_dots(lhs.narrow(0, b, 1), rhs.narrow(0, b, 1), alone);
    EXPECT_TRUE(alone[0].equal(together[b])) << b;
    auto alone_weighted = torch::empty({1, m, 2 * d + 8});
    imram::weighted_fragments(weights.narrow(0, b, 1), half_values.narrow(0, b, 1), alone_weighted, false);
    EXPECT_TRUE(alone_weighted[0].equal(weighted[b])) << b;
  }
}

// Half precision's whole range reads exactly: subnormals, the largest finite value, infinities
// and NaN, each times one.
TEST(FragmentProducts, Float16ValuesAreReadExactly) {
  const std::vector<float> specials = {0.0f,     -0.0f, 5.960464477539063e-08f, -6.097555160522461e-05f,
                                       65504.0f, -1.0f, 0.333251953125f,        INFINITY,
                                       -INFINITY};
  const auto n = std::int64_t(specials.size());
  const auto values = torch::tensor(specials).view({n, 1, 1}).expand({n, 1, 32}).contiguous();
  const auto half = values.to(torch::kHalf);
  auto out = torch::empty({n, 1, 32});
  imram::weighted_fragments(torch::ones({n, 1, 1}), half, out, false);
  EXPECT_TRUE(out.equal(half.to(torch::kFloat32))) << out.select(2, 0);
  const auto nan = torch::full({1, 1, 16}, NAN).to(torch::kHalf);
  auto nan_out = torch::empty({1, 1, 16});
  imram::weighted_fragments(torch::ones({1, 1, 1}), nan, nan_out, false);
  EXPECT_TRUE(nan_out.isnan().all().item<bool>());
}

}  // namespace
