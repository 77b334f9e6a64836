#include "imram/engine/cpu_matching.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "imram/model/attention.h"
#include "imram/model/image_encoder.h"

namespace imram {

namespace {

// GCC builds the update loop for AVX-512, AVX2 and plain x86-64 and picks one at load time, so
// the binary stays portable without giving up the wide registers.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define IMRAM_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define IMRAM_VECTOR_CLONES
#endif

// Floats16 passes by value only between inlined helpers, so the ABI note about AVX-512 vector
// arguments does not concern any call that exists in the binary.
#pragma GCC diagnostic ignored "-Wpsabi"

// Sixteen floats in one value: GCC's vector extension, lowered to one AVX-512 register, two AVX2
// registers or four SSE registers by the clone that runs.
typedef float Floats16 __attribute__((vector_size(64)));
typedef std::int32_t Ints16 __attribute__((vector_size(64)));

// e^x within 2 ulp for |x| <= 88, clamped beyond (Cephes' expf: x = n ln2 + r, a degree-6
// polynomial in r, 2^n through the exponent bits). Plain arithmetic without branches or calls,
// for scalars and Floats16 alike; LibTorch's tanh and sigmoid would each need a pass over memory.
template <typename Value, typename Integer>
inline Value exp_approx(Value x) {
  x = x < -88.0f ? Value{} - 88.0f : x;
  x = x > 88.0f ? Value{} + 88.0f : x;
  // Adding and removing 1.5 * 2^23 rounds to the nearest integer (|x log2 e| < 2^22 here).
  const Value n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const Value r = x - n * 0.693359375f + n * 2.12194440e-4f;
  Value p = Value{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  Integer bits;
  if constexpr (std::is_same_v<Value, float>) {
    bits = (static_cast<std::int32_t>(n) + 127) << 23;
  } else {
    bits = (__builtin_convertvector(n, Integer) + 127) << 23;
  }
  Value scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

template <typename Value, typename Integer>
inline Value refined_value(Value o_pre, Value g_pre, Value q) {
  const Value o = 2.0f / (1.0f + exp_approx<Value, Integer>(-2.0f * o_pre)) - 1.0f;
  const Value g = 1.0f / (1.0f + exp_approx<Value, Integer>(-g_pre));
  return g * q + (1.0f - g) * o;
}

inline Floats16 load16(const float* p) {
  Floats16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The gated memory update for `rows` rows, fused into one pass: pre-activations
// [o_pre ; g_pre] = preactivation + addend (rows x 2d; the addend is per row, or one (2d)
// bias when addend_stride is 0), o = tanh(o_pre), g = sigmoid(g_pre), q' = g q + (1 - g) o,
// then optionally q' / (|q'| + 1e-8) as l2norm() does. `out` may be `previous`.
IMRAM_VECTOR_CLONES
void gated_update(const float* preactivation, const float* addend, std::int64_t addend_stride,
                  const float* previous, float* out, std::int64_t rows, std::int64_t d, bool normalize) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* o_pre = preactivation + r * 2 * d;
    const float* g_pre = o_pre + d;
    const float* o_add = addend + r * addend_stride;
    const float* g_add = o_add + d;
    const float* q = previous + r * d;
    float* y = out + r * d;
    Floats16 squares{};
    float tail_squares = 0;
    std::int64_t j = 0;
    for (; j + 16 <= d; j += 16) {
      const Floats16 v = refined_value<Floats16, Ints16>(load16(o_pre + j) + load16(o_add + j),
                                                          load16(g_pre + j) + load16(g_add + j), load16(q + j));
      std::memcpy(y + j, &v, sizeof v);
      squares += v * v;
    }
    for (; j < d; ++j) {
      y[j] = refined_value<float, std::int32_t>(o_pre[j] + o_add[j], g_pre[j] + g_add[j], q[j]);
      tail_squares += y[j] * y[j];
    }
    if (!normalize) continue;
    float squared = tail_squares;
    for (int l = 0; l < 16; ++l) squared += squares[l];
    const float scale = 1.0f / (std::sqrt(std::max(squared, float(kTinySquaredNorm))) + 1e-8f);
    for (std::int64_t i = 0; i < d; ++i) y[i] *= scale;
  }
}

// The memory update of all rows of one context item; `addend` is (rows x 2d) or a (2d) bias.
void refine_queries(const torch::Tensor& preactivation, const torch::Tensor& addend, const torch::Tensor& previous,
                    torch::Tensor& out, bool normalize) {
  gated_update(preactivation.data_ptr<float>(), addend.data_ptr<float>(), addend.dim() == 1 ? 0 : addend.size(1),
               previous.data_ptr<float>(), out.data_ptr<float>(), preactivation.size(0), previous.size(1), normalize);
}

}  // namespace

torch::Tensor iterative_matching_cpu(const torch::Tensor& query_in, const torch::Tensor& query_mask,
                                     const torch::Tensor& context_in, const torch::Tensor& context_padding,
                                     const MemoryDistillation& memory, const ModelConfig& config,
                                     const torch::Tensor& cached_context_halves) {
  const auto query = query_in.contiguous(), context = context_in.contiguous();
  const auto A = query.size(0), nq = query.size(1), d = query.size(2);
  const auto B = context.size(0), nc = context.size(1);
  const int K = config.iteration_steps;
  const auto mask = query_mask.view({A, nq, 1});
  const auto valid_queries = query_mask.sum(1);               // (A)
  const auto query_sq_norms = query.pow(2).sum(-1);           // (A, n_q)
  const auto query_rows = query.view({A * nq, d});
  torch::Tensor context_halves, query_halves, query_weight_t, query_bias;
  if (K > 1) {
    context_halves = cached_context_halves.defined() ? cached_context_halves.contiguous()
                                                     : memory.context_half(context).contiguous();  // (B, n_c, 2d)
    query_halves = memory.query_half(query_rows).contiguous();                // (A n_q, 2d)
    query_weight_t = memory.query_weight().t();                               // (d, 2d)
    query_bias = memory.query_bias().contiguous();
  }
  auto steps = torch::empty({K, A, B}, query.options());

  at::parallel_for(0, B, 1, [&](std::int64_t b_begin, std::int64_t b_end) {
    torch::Tensor preactivation, current;
    if (K > 1) {
      preactivation = torch::empty({A * nq, 2 * d}, query.options());
      current = torch::empty({A * nq, d}, query.options());
    }
    for (std::int64_t b = b_begin; b < b_end; ++b) {
      const auto context_b = context[b];
      const auto context_t = context_b.t();
      const auto gram = torch::mm(context_b, context_t);                     // (n_c, n_c)
      const auto padding = context_padding.defined() ? context_padding[b].view({1, 1, nc}) : torch::Tensor();
      const auto raw_original = torch::mm(query_rows, context_t).view({A, nq, nc});
      for (int k = 1; k <= K; ++k) {
        const auto raw = k == 1 ? raw_original : torch::mm(current, context_t).view({A, nq, nc});
        const auto alpha = attention_weights(normalize_raw_scores(raw, config.raw_feature_norm, mask),
                                             config.lambda_softmax, padding);
        const auto alpha_rows = alpha.view({A * nq, nc});
        const auto dots = (alpha * raw_original).sum(-1);
        const auto attended_sq = (torch::mm(alpha_rows, gram).view({A, nq, nc}) * alpha).sum(-1);
        const auto cosines = dots / (query_sq_norms * attended_sq).clamp_min(1e-16).sqrt();
        steps[k - 1].select(1, b).copy_((cosines * query_mask).sum(-1) / valid_queries);
        if (k == K) break;
        if (k == 1) {
          torch::mm_out(preactivation, alpha_rows, context_halves[b]);
          refine_queries(preactivation, query_halves, query_rows, current, config.imram_norm);
        } else {
          torch::mm_out(preactivation, current, query_weight_t);
          preactivation.addmm_(alpha_rows, context_halves[b]);
          refine_queries(preactivation, query_bias, current, current, config.imram_norm);
        }
      }
    }
  });
  return steps;
}

}  // namespace imram
