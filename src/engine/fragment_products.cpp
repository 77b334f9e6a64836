#include "imram/engine/fragment_products.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <type_traits>

#include "simd.h"

namespace imram {

namespace {

using simd::Floats16;
using simd::load1;

// Sixteen values as floats: float16 ones with the AVX-512 conversion instruction where the
// kernel is compiled for it (`Avx512`), else with simd.h's portable conversion.
template <bool Avx512, typename T>
IMRAM_INLINE Floats16 load16(const T* p) {
#ifdef IMRAM_X86_DISPATCH
  if constexpr (Avx512 && std::is_same_v<T, std::uint16_t>) return simd::load16_avx512(p);
#endif
  return simd::load16(p);
}

// Rows of dot products: out[i][j] = lhs row i . rhs row j. Each output is one sixteen-lane sum
// over the full chunks, its lanes added in order, then the tail, whatever block it is in.
template <typename L, typename R>
struct DotItem {
  const L* lhs;
  std::int64_t lhs_lead;
  int m;
  const R* rhs;
  std::int64_t rhs_lead;
  int n;
  std::int64_t d;
  float* out;
  std::int64_t out_lead;

  template <bool Avx512, int ML, int MR>
  IMRAM_INLINE void block(int i0, int j0) const {
    Floats16 acc[ML][MR] = {};
    std::int64_t t = 0;
    for (; t + 16 <= d; t += 16) {
      Floats16 left[ML], right[MR];
      for (int i = 0; i < ML; ++i) left[i] = load16<Avx512>(lhs + (i0 + i) * lhs_lead + t);
      for (int j = 0; j < MR; ++j) right[j] = load16<Avx512>(rhs + (j0 + j) * rhs_lead + t);
      for (int i = 0; i < ML; ++i)
        for (int j = 0; j < MR; ++j) acc[i][j] += left[i] * right[j];
    }
    for (int i = 0; i < ML; ++i)
      for (int j = 0; j < MR; ++j) {
        float sum = 0;
        for (int lane = 0; lane < 16; ++lane) sum += acc[i][j][lane];
        for (std::int64_t u = t; u < d; ++u)
          sum += load1(lhs + (i0 + i) * lhs_lead + u) * load1(rhs + (j0 + j) * rhs_lead + u);
        out[(i0 + i) * out_lead + j0 + j] = sum;
      }
  }

  template <bool Avx512, int ML>
  IMRAM_INLINE void row_block(int i0) const {
    int j = 0;
    for (; j + 4 <= n; j += 4) block<Avx512, ML, 4>(i0, j);
    for (; j < n; ++j) block<Avx512, ML, 1>(i0, j);
  }

  template <bool Avx512>
  IMRAM_INLINE void run() const {
    int i = 0;
    for (; i + 4 <= m; i += 4) row_block<Avx512, 4>(i);
    for (; i < m; ++i) row_block<Avx512, 1>(i);
  }
};

// Weighted sums of rows: out[i] (+)= sum_c weights[i][c] values[c], each output summed over c in
// order (after its old value when accumulating), whatever block it is in.
template <typename V>
struct WeightedItem {
  const float* weights;
  std::int64_t weight_lead;
  int m, n;
  const V* values;
  std::int64_t value_lead;
  std::int64_t w;
  float* out;
  std::int64_t out_lead;
  bool accumulate;

  template <bool Avx512, int ML, int NJ>
  IMRAM_INLINE void block(int i0, std::int64_t j0) const {
    Floats16 acc[ML][NJ];
    for (int i = 0; i < ML; ++i)
      for (int j = 0; j < NJ; ++j)
        acc[i][j] = accumulate ? load16<Avx512>(out + (i0 + i) * out_lead + j0 + 16 * j) : Floats16{};
    for (int c = 0; c < n; ++c) {
      Floats16 value[NJ];
      for (int j = 0; j < NJ; ++j) value[j] = load16<Avx512>(values + c * value_lead + j0 + 16 * j);
      for (int i = 0; i < ML; ++i) {
        const float weight = weights[(i0 + i) * weight_lead + c];
        for (int j = 0; j < NJ; ++j) acc[i][j] += weight * value[j];
      }
    }
    for (int i = 0; i < ML; ++i)
      for (int j = 0; j < NJ; ++j) simd::store16(out + (i0 + i) * out_lead + j0 + 16 * j, acc[i][j]);
  }

  template <bool Avx512, int NJ>
  IMRAM_INLINE void column_block(std::int64_t j0) const {
    int i = 0;
    for (; i + 4 <= m; i += 4) block<Avx512, 4, NJ>(i, j0);
    for (; i < m; ++i) block<Avx512, 1, NJ>(i, j0);
  }

  template <bool Avx512>
  IMRAM_INLINE void run() const {
    std::int64_t j = 0;
    for (; j + 64 <= w; j += 64) column_block<Avx512, 4>(j);
    for (; j + 16 <= w; j += 16) column_block<Avx512, 1>(j);
    for (; j < w; ++j)
      for (int i = 0; i < m; ++i) {
        float sum = accumulate ? out[i * out_lead + j] : 0.0f;
        for (int c = 0; c < n; ++c) sum += weights[i * weight_lead + c] * load1(values + c * value_lead + j);
        out[i * out_lead + j] = sum;
      }
  }
};

// A float32 or float16 tensor's elements as the kernels read them.
template <typename T>
const T* elements(const torch::Tensor& t) {
  if constexpr (std::is_same_v<T, float>) {
    return t.data_ptr<float>();
  } else {
    return reinterpret_cast<const std::uint16_t*>(t.data_ptr<at::Half>());
  }
}

void check_fragments(const torch::Tensor& t, const char* what) {
  TORCH_CHECK(t.dim() == 3 && t.device().is_cpu(), what, ": a (items, rows, columns) CPU tensor");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kHalf, what, ": float32 or float16");
  TORCH_CHECK(t.size(2) <= 1 || t.stride(2) == 1, what, ": its rows must be contiguous");
}

void check_out(const torch::Tensor& out, std::int64_t items, std::int64_t rows, std::int64_t columns) {
  TORCH_CHECK(out.scalar_type() == torch::kFloat32 && out.size(0) == items && out.size(1) == rows &&
                  out.size(2) == columns && (columns <= 1 || out.stride(2) == 1),
              "fragment products: the output must be float32 (", items, ", ", rows, ", ", columns, ") with contiguous rows");
}

template <typename L, typename R>
void dots(const torch::Tensor& lhs, const torch::Tensor& rhs, torch::Tensor& out, bool symmetric) {
  const auto items = rhs.size(0);
  const auto lhs_step = lhs.size(0) == 1 ? 0 : lhs.stride(0);
  const L* lhs_data = elements<L>(lhs);
  const R* rhs_data = elements<R>(rhs);
  float* out_data = out.data_ptr<float>();
  at::parallel_for(0, items, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b) {
      const DotItem<L, R> item{lhs_data + b * lhs_step, lhs.stride(1), int(lhs.size(1)), rhs_data + b * rhs.stride(0),
                               rhs.stride(1), int(rhs.size(1)), rhs.size(2), out_data + b * out.stride(0),
                               out.stride(1)};
      if (!symmetric) {
        simd::run(item);
        continue;
      }
      // A Gram matrix: the rows below the diagonal by blocks of rows, then mirrored (the same
      // products in the other order, hence the same bits).
      for (int i0 = 0; i0 < item.n; i0 += 4) {
        auto rows = item;
        rows.lhs = item.lhs + i0 * item.lhs_lead;
        rows.m = std::min(4, item.n - i0);
        rows.n = std::min(item.n, i0 + rows.m);
        rows.out = item.out + i0 * item.out_lead;
        simd::run(rows);
      }
      for (int i = 0; i < item.n; ++i)
        for (int j = i + 1; j < item.n; ++j) item.out[i * item.out_lead + j] = item.out[j * item.out_lead + i];
    }
  });
}

template <typename V>
void weighted(const torch::Tensor& weights, const torch::Tensor& values, torch::Tensor& out, bool accumulate) {
  const V* value_data = elements<V>(values);
  const float* weight_data = weights.data_ptr<float>();
  float* out_data = out.data_ptr<float>();
  at::parallel_for(0, weights.size(0), 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b)
      simd::run(WeightedItem<V>{weight_data + b * weights.stride(0), weights.stride(1), int(weights.size(1)),
                               int(weights.size(2)), value_data + b * values.stride(0), values.stride(1),
                               values.size(2), out_data + b * out.stride(0), out.stride(1), accumulate});
  });
}

}  // namespace

void fragment_dots(const torch::Tensor& lhs, const torch::Tensor& rhs, torch::Tensor& out) {
  check_fragments(lhs, "fragment_dots' left side");
  check_fragments(rhs, "fragment_dots' right side");
  TORCH_CHECK(lhs.size(2) == rhs.size(2) && (lhs.size(0) == 1 || lhs.size(0) == rhs.size(0)),
              "fragment_dots: sizes disagree");
  check_out(out, rhs.size(0), lhs.size(1), rhs.size(1));
  const bool half_lhs = lhs.scalar_type() == torch::kHalf, half_rhs = rhs.scalar_type() == torch::kHalf;
  if (half_lhs && half_rhs) return dots<std::uint16_t, std::uint16_t>(lhs, rhs, out, false);
  if (half_lhs) return dots<std::uint16_t, float>(lhs, rhs, out, false);
  if (half_rhs) return dots<float, std::uint16_t>(lhs, rhs, out, false);
  dots<float, float>(lhs, rhs, out, false);
}

void fragment_grams(const torch::Tensor& fragments, torch::Tensor& out) {
  check_fragments(fragments, "fragment_grams' fragments");
  check_out(out, fragments.size(0), fragments.size(1), fragments.size(1));
  if (fragments.scalar_type() == torch::kHalf) return dots<std::uint16_t, std::uint16_t>(fragments, fragments, out, true);
  dots<float, float>(fragments, fragments, out, true);
}

void weighted_fragments(const torch::Tensor& weights, const torch::Tensor& values, torch::Tensor& out,
                        bool accumulate) {
  check_fragments(values, "weighted_fragments' values");
  TORCH_CHECK(weights.dim() == 3 && weights.scalar_type() == torch::kFloat32 && weights.stride(2) == 1 &&
                  weights.size(0) == values.size(0) && weights.size(2) == values.size(1),
              "weighted_fragments: the weights must be float32 (items, rows, value rows) with contiguous rows");
  check_out(out, values.size(0), weights.size(1), values.size(2));
  if (values.scalar_type() == torch::kHalf) return weighted<std::uint16_t>(weights, values, out, accumulate);
  weighted<float>(weights, values, out, accumulate);
}

}  // namespace imram
