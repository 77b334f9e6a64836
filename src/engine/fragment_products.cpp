#include "imram/engine/fragment_products.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

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
              "fragment products: the output must be float32 (", items, ", ", rows, ", ", columns,
              ") with contiguous rows");
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
      const DotItem<L, R> item{lhs_data + b * lhs_step,
                               lhs.stride(1),
                               int(lhs.size(1)),
                               rhs_data + b * rhs.stride(0),
                               rhs.stride(1),
                               int(rhs.size(1)),
                               rhs.size(2),
                               out_data + b * out.stride(0),
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

// IMRAM's first step of a range of (context item, query item) pairs from their raw scores and the
// context items' Gram matrices, each pair in cache from its raw scores to its similarity: the
// fused form of first_step_from_products' tensor ops (engine/matching.h), which tests hold it to.
template <typename G>
struct FirstStepPairs {
  const float* raw;           // (B, A, n_q, n_c), or null when looked up:
  const float* table;         //   rows of a table (K, n_q) or (K, n_c)
  const std::int64_t* codes;  //   by the context items' codes (B, n_c) or the query items' (A, n_q)
  bool codes_of_context;
  const G* gram;               // (B, n_c, n_c)
  const float* query_mask;     // (A, n_q)
  const float* query_squared;  // (A, n_q)
  const bool* padding;         // (B, n_c), or null
  RawFeatureNorm norm;
  float lambda;
  std::int64_t A;
  int nq, nc;
  std::int64_t begin, end;
  float* out;  // (B A)

  // x <- e^x over n values, sixteen at a time.
  template <bool Avx512>
  IMRAM_INLINE static void exp_in_place(float* x, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) simd::store16(x + i, simd::exp_approx<Floats16, simd::Ints16>(simd::load16(x + i)));
    for (; i < n; ++i) x[i] = simd::exp_approx<float, std::int32_t>(x[i]);
  }

  template <bool Avx512>
  IMRAM_INLINE void run() const {
    const auto cells = std::size_t(nq) * std::size_t(nc);
    // The Gram matrix as float32 rows padded to whole sixteens: the weighted pass below then has
    // no scalar tail (which, converting a float16 value per product, took most of its time).
    const int padded = (nc + 15) / 16 * 16;
    const auto padded_cells = std::size_t(std::max(nq, nc)) * std::size_t(padded);
    std::vector<float> scratch(2 * cells + 2 * padded_cells + std::size_t(nc));
    float* normed = scratch.data();
    float* alpha = normed + cells;
    float* weighted = alpha + cells;
    float* wide_gram = weighted + padded_cells;
    float* column = wide_gram + padded_cells;
    std::int64_t loaded = -1;  // the context item whose Gram matrix wide_gram holds
    std::vector<float> looked_up(raw ? 0 : cells);
    for (std::int64_t pair = begin; pair < end; ++pair) {
      const auto b = pair / A, a = pair % A;
      const float* x = raw ? raw + pair * nq * nc : looked_up.data();
      if (!raw) {
        // Looked up where the pair needs them, in cache, rather than gathered for every pair first.
        if (codes_of_context) {
          const auto* item_codes = codes + b * nc;
          for (int c = 0; c < nc; ++c) {
            const float* row = table + item_codes[c] * nq;
            for (int j = 0; j < nq; ++j) looked_up[std::size_t(j * nc + c)] = row[j];
          }
        } else {
          const auto* item_codes = codes + a * nq;
          for (int j = 0; j < nq; ++j)
            std::copy(table + item_codes[j] * nc, table + (item_codes[j] + 1) * nc, looked_up.data() + j * nc);
        }
      }
      const float* mask = query_mask + a * nq;
      const float* squared = query_squared + a * nq;
      const bool* pad = padding ? padding + b * nc : nullptr;
      // Step 2: across the queries, for each context fragment.
      const bool clip = norm == RawFeatureNorm::ClippedL2Norm || norm == RawFeatureNorm::Clipped;
      if (norm == RawFeatureNorm::Softmax) {
        for (int c = 0; c < nc; ++c) column[c] = -INFINITY;
        for (int j = 0; j < nq; ++j)
          if (mask[j] != 0)
            for (int c = 0; c < nc; ++c) column[c] = std::max(column[c], x[j * nc + c]);
        for (int j = 0; j < nq; ++j)
          for (int c = 0; c < nc; ++c) normed[j * nc + c] = x[j * nc + c] - column[c];
        exp_in_place<Avx512>(normed, int(cells));
        for (int c = 0; c < nc; ++c) column[c] = 0;
        for (int j = 0; j < nq; ++j)
          for (int c = 0; c < nc; ++c) {
            if (mask[j] == 0) normed[j * nc + c] = 0;
            column[c] += normed[j * nc + c];
          }
        for (int j = 0; j < nq; ++j)
          for (int c = 0; c < nc; ++c) normed[j * nc + c] /= column[c];
      } else {
        for (int c = 0; c < nc; ++c) column[c] = 0;
        for (int j = 0; j < nq; ++j)
          for (int c = 0; c < nc; ++c) {
            float v = x[j * nc + c];
            if (clip) v = v < 0 ? 0.1f * v : v;
            v *= mask[j];
            normed[j * nc + c] = v;
            column[c] += v * v;
          }
        if (norm == RawFeatureNorm::ClippedL2Norm || norm == RawFeatureNorm::L2Norm) {
          for (int c = 0; c < nc; ++c) column[c] = 1.0f / (std::sqrt(std::max(column[c], 1e-30f)) + 1e-8f);
          for (int j = 0; j < nq; ++j)
            for (int c = 0; c < nc; ++c) normed[j * nc + c] *= column[c];
        }
      }
      // Step 3: softmax over the context of lambda times that, padding excluded; the rows of the
      // query's padding are computed and left out of the mean.
      for (int j = 0; j < nq; ++j) {
        float top = -INFINITY;
        for (int c = 0; c < nc; ++c)
          if (!pad || !pad[c]) top = std::max(top, lambda * normed[j * nc + c]);
        for (int c = 0; c < nc; ++c) alpha[j * nc + c] = lambda * normed[j * nc + c] - top;
      }
      exp_in_place<Avx512>(alpha, int(cells));
      float total = 0, valid = 0;
      for (int j = 0; j < nq; ++j) {
        float* row = alpha + j * nc;
        float sum = 0;
        for (int c = 0; c < nc; ++c) {
          if (pad && pad[c]) row[c] = 0;
          sum += row[c];
        }
        for (int c = 0; c < nc; ++c) row[c] /= sum;
      }
      // |a|^2 = alpha^T G alpha: every query row's alpha G in one register-blocked pass.
      const G* item_gram = gram + b * nc * nc;
      for (int c = 0; b != loaded && c < nc; ++c) {
        int i = 0;
        for (; i + 16 <= nc; i += 16) simd::store16(wide_gram + c * padded + i, load16<Avx512>(item_gram + c * nc + i));
        for (; i < nc; ++i) wide_gram[c * padded + i] = load1(item_gram + c * nc + i);
        for (; i < padded; ++i) wide_gram[c * padded + i] = 0;
      }
      loaded = b;
      WeightedItem<float>{alpha, nc, nq, nc, wide_gram, padded, padded, weighted, padded, false}.template run<Avx512>();
      for (int j = 0; j < nq; ++j) {
        valid += mask[j];
        if (mask[j] == 0) continue;
        float dots = 0, attended = 0;
        for (int c = 0; c < nc; ++c) {
          dots += alpha[j * nc + c] * x[j * nc + c];
          attended += alpha[j * nc + c] * weighted[j * padded + c];
        }
        total += dots / std::sqrt(std::max(squared[j] * attended, 1e-16f)) * mask[j];
      }
      out[pair] = total / valid;
    }
  }
};

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
  if (fragments.scalar_type() == torch::kHalf)
    return dots<std::uint16_t, std::uint16_t>(fragments, fragments, out, true);
  dots<float, float>(fragments, fragments, out, true);
}

void first_step_pairs(const FirstStepRaw& raw, const torch::Tensor& gram, const torch::Tensor& query_mask,
                      const torch::Tensor& query_squared_norms, const torch::Tensor& context_padding,
                      RawFeatureNorm norm, double lambda, torch::Tensor& out) {
  const bool dense = raw.scores.defined();
  std::int64_t B = 0, A = 0;
  int nq = 0, nc = 0;
  if (dense) {
    TORCH_CHECK(raw.scores.dim() == 4 && raw.scores.scalar_type() == torch::kFloat32 && raw.scores.is_contiguous() &&
                    raw.scores.device().is_cpu(),
                "first_step_pairs: raw scores must be float32 (B, A, n_q, n_c), contiguous, on the CPU");
    B = raw.scores.size(0), A = raw.scores.size(1), nq = int(raw.scores.size(2)), nc = int(raw.scores.size(3));
  } else {
    TORCH_CHECK(
        raw.table.dim() == 2 && raw.table.scalar_type() == torch::kFloat32 && raw.table.is_contiguous() &&
            raw.codes.dim() == 2 && raw.codes.scalar_type() == torch::kInt64 && raw.codes.is_contiguous(),
        "first_step_pairs: a table must be float32 (K, width) and its codes int64 (items, fragments), contiguous");
    if (raw.codes_of_context) {
      B = raw.codes.size(0), A = 1, nc = int(raw.codes.size(1)), nq = int(raw.table.size(1));
    } else {
      B = 1, A = raw.codes.size(0), nq = int(raw.codes.size(1)), nc = int(raw.table.size(1));
    }
  }
  TORCH_CHECK(gram.dim() == 3 && gram.size(0) == B && gram.size(1) == nc && gram.size(2) == nc &&
                  gram.is_contiguous() && (gram.scalar_type() == torch::kFloat32 || gram.scalar_type() == torch::kHalf),
              "first_step_pairs: the Gram matrices must be (B, n_c, n_c) float32 or float16, contiguous");
  TORCH_CHECK(query_mask.scalar_type() == torch::kFloat32 && query_mask.is_contiguous() &&
                  query_mask.numel() == A * nq && query_squared_norms.scalar_type() == torch::kFloat32 &&
                  query_squared_norms.is_contiguous() && query_squared_norms.numel() == A * nq,
              "first_step_pairs: the query mask and squared norms must be float32 (A, n_q), contiguous");
  TORCH_CHECK(!context_padding.defined() || (context_padding.scalar_type() == torch::kBool &&
                                             context_padding.is_contiguous() && context_padding.numel() == B * nc),
              "first_step_pairs: the context padding must be bool (B, n_c), contiguous");
  TORCH_CHECK(out.scalar_type() == torch::kFloat32 && out.is_contiguous() && out.numel() == B * A,
              "first_step_pairs: out must be float32 (B, A), contiguous");
  const auto run_pairs = [&](auto gram_data) {
    using G = std::remove_const_t<std::remove_pointer_t<decltype(gram_data)>>;
    at::parallel_for(0, B * A, 64, [&](std::int64_t begin, std::int64_t end) {
      simd::run(FirstStepPairs<G>{dense ? raw.scores.data_ptr<float>() : nullptr,
                                  dense ? nullptr : raw.table.data_ptr<float>(),
                                  dense ? nullptr : raw.codes.data_ptr<std::int64_t>(), raw.codes_of_context, gram_data,
                                  query_mask.data_ptr<float>(), query_squared_norms.data_ptr<float>(),
                                  context_padding.defined() ? context_padding.data_ptr<bool>() : nullptr, norm,
                                  float(lambda), A, nq, nc, begin, end, out.data_ptr<float>()});
    });
  };
  if (gram.scalar_type() == torch::kHalf)
    run_pairs(static_cast<const std::uint16_t*>(gram.data_ptr()));
  else
    run_pairs(static_cast<const float*>(gram.data_ptr<float>()));
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
