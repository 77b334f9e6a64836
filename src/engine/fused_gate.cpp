#include "imram/engine/fused_gate.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "imram/model/image_encoder.h"
#include "simd.h"

namespace imram {

namespace {

using simd::Floats16;
using simd::Ints16;
using simd::load16;

template <typename Value, typename Integer>
IMRAM_INLINE Value refined_value(Value o_pre, Value g_pre, Value q) {
  const Value o = 2.0f / (1.0f + simd::exp_approx<Value, Integer>(-2.0f * o_pre)) - 1.0f;
  const Value g = 1.0f / (1.0f + simd::exp_approx<Value, Integer>(-g_pre));
  return g * q + (1.0f - g) * o;
}

struct GateRows {
  const float* preactivation;
  const float* addend;
  std::int64_t addend_stride;  // 0: one (2d) bias for every row
  const float* previous;
  float* out;
  std::int64_t rows, d;
  bool normalize;
};

// The sixteen-lane loop and a scalar tail. Every instruction set gives the same bits: the lanes
// do the same IEEE operations (none of the targets enables FMA, so nothing is contracted) and
// the squared norm is summed in the same order.
IMRAM_INLINE void gated_update_rows(const GateRows& a) {
  for (std::int64_t r = 0; r < a.rows; ++r) {
    const float* o_pre = a.preactivation + r * 2 * a.d;
    const float* g_pre = o_pre + a.d;
    const float* o_add = a.addend + r * a.addend_stride;
    const float* g_add = o_add + a.d;
    const float* q = a.previous + r * a.d;
    float* y = a.out + r * a.d;
    Floats16 squares{};
    float tail_squares = 0;
    std::int64_t j = 0;
    for (; j + 16 <= a.d; j += 16) {
      const Floats16 v = refined_value<Floats16, Ints16>(load16(o_pre + j) + load16(o_add + j),
                                                         load16(g_pre + j) + load16(g_add + j), load16(q + j));
      std::memcpy(y + j, &v, sizeof v);
      squares += v * v;
    }
    for (; j < a.d; ++j) {
      y[j] = refined_value<float, std::int32_t>(o_pre[j] + o_add[j], g_pre[j] + g_add[j], q[j]);
      tail_squares += y[j] * y[j];
    }
    if (!a.normalize) continue;
    float squared = tail_squares;
    for (int l = 0; l < 16; ++l) squared += squares[l];
    const float scale = 1.0f / (std::sqrt(std::max(squared, float(kTinySquaredNorm))) + 1e-8f);
    for (std::int64_t i = 0; i < a.d; ++i) y[i] *= scale;
  }
}

// The pass as simd::run wants it (it has no AVX-512-only instruction).
struct GateKernel {
  const GateRows& rows;
  template <bool Avx512>
  IMRAM_INLINE void run() const {
    gated_update_rows(rows);
  }
};

}  // namespace

void fused_gated_update(const torch::Tensor& preactivation, const torch::Tensor& addend, const torch::Tensor& previous,
                        torch::Tensor& out, bool normalize) {
  const GateRows rows{preactivation.data_ptr<float>(),
                      addend.data_ptr<float>(),
                      addend.dim() == 1 ? 0 : addend.size(-1),
                      previous.data_ptr<float>(),
                      out.data_ptr<float>(),
                      preactivation.numel() / preactivation.size(-1),
                      previous.size(-1),
                      normalize};
  simd::run(GateKernel{rows});
}

std::string fused_gate_instruction_set() { return simd::to_string(simd::instruction_set()); }

}  // namespace imram
