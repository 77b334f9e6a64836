#include "memory_product.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "imram/error.h"
#include "imram/util/instruction_set.h"

#ifdef IMRAM_X86_DISPATCH
#include <immintrin.h>
#endif

namespace imram {

#ifdef IMRAM_X86_DISPATCH
namespace {

// Rows per tile: 12 rows x 32 columns are 24 accumulators, with room for the two panel values
// and the broadcast row value in AVX-512's 32 registers. In a prototype (d = 1,024, 1,040 rows,
// one blocking) 8, 12 and 13 rows took 10.96-11.34 ms, 14 rows 12.15 (docs/engine.md).
constexpr std::int64_t kTileRows = 12;
// Columns whose panels a tile row block passes over before the next block: 256 columns of
// d = 1,024 floats are 1 MB, the second-level cache of the processors this was measured on.
constexpr std::int64_t kColumnBlock = 256;

template <int Rows>
__attribute__((target("avx512f"))) void tile(const float* rows, std::int64_t row_stride, std::int64_t depth,
                                             const float* panel, float* out, std::int64_t out_stride,
                                             __mmask16 low_mask, __mmask16 high_mask, bool accumulate) {
  __m512 low[Rows], high[Rows];
  for (int i = 0; i < Rows; ++i) {
    low[i] = accumulate ? _mm512_maskz_loadu_ps(low_mask, out + i * out_stride) : _mm512_setzero_ps();
    high[i] = accumulate ? _mm512_maskz_loadu_ps(high_mask, out + i * out_stride + 16) : _mm512_setzero_ps();
  }
  for (std::int64_t k = 0; k < depth; ++k) {
    const __m512 panel_low = _mm512_loadu_ps(panel + k * kMemoryPanelWidth);
    const __m512 panel_high = _mm512_loadu_ps(panel + k * kMemoryPanelWidth + 16);
#pragma GCC unroll 12
    for (int i = 0; i < Rows; ++i) {
      const __m512 value = _mm512_set1_ps(rows[i * row_stride + k]);
      low[i] = _mm512_fmadd_ps(value, panel_low, low[i]);
      high[i] = _mm512_fmadd_ps(value, panel_high, high[i]);
    }
  }
  for (int i = 0; i < Rows; ++i) {
    _mm512_mask_storeu_ps(out + i * out_stride, low_mask, low[i]);
    _mm512_mask_storeu_ps(out + i * out_stride + 16, high_mask, high[i]);
  }
}

using Tile = void (*)(const float*, std::int64_t, std::int64_t, const float*, float*, std::int64_t, __mmask16,
                      __mmask16, bool);
constexpr Tile kTiles[kTileRows + 1] = {nullptr, tile<1>, tile<2>, tile<3>,  tile<4>,  tile<5>, tile<6>,
                                        tile<7>, tile<8>, tile<9>, tile<10>, tile<11>, tile<12>};

__mmask16 lanes(std::int64_t count) {
  return count >= 16 ? __mmask16(0xffff) : __mmask16((1u << std::max<std::int64_t>(count, 0)) - 1);
}

}  // namespace
#endif

void memory_panel_products(const float* rows, std::int64_t m, std::int64_t row_stride, std::int64_t depth,
                           const float* panels, std::int64_t width, float* out, std::int64_t out_stride,
                           bool accumulate) {
#ifdef IMRAM_X86_DISPATCH
  const auto row_blocks = (m + kTileRows - 1) / kTileRows;
  at::parallel_for(0, row_blocks, 1, [&](std::int64_t first_block, std::int64_t end_block) {
    for (std::int64_t column = 0; column < width; column += kColumnBlock) {
      const auto column_end = std::min(width, column + kColumnBlock);
      for (std::int64_t block = first_block; block < end_block; ++block) {
        const auto row = block * kTileRows, count = std::min(kTileRows, m - row);
        for (std::int64_t panel = column; panel < column_end; panel += kMemoryPanelWidth) {
          const auto left = width - panel;
          kTiles[count](rows + row * row_stride, row_stride, depth, panels + panel * depth,
                        out + row * out_stride + panel, out_stride, lanes(left), lanes(left - 16), accumulate);
        }
      }
    }
  });
#else
  (void)rows, (void)m, (void)row_stride, (void)depth, (void)panels, (void)width, (void)out, (void)out_stride;
  (void)accumulate;
  throw Error("memory_panel_products: this build has no AVX-512 kernels (simd::instruction_set())");
#endif
}

}  // namespace imram
