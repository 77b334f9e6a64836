#pragma once
// The product of the memory unit's weights (model/memory.h) with many rows, as imram computes
// it where the CPU has AVX-512: there OpenBLAS may run AVX2 kernels (it does on this project's
// machines, whose environment holds it to them), at about half the rate of this one
// (docs/engine.md#the-memory-product). Every output is one chain of fused multiply-adds over
// k = 0 .. d - 1 in order, from zero or from the output's own value: the same bits for any
// number of rows and any split over threads, so that a query searched alone and the same query
// among many score alike.
#include <cstdint>

namespace imram {

// Columns per panel of the packed weights: two AVX-512 registers.
inline constexpr std::int64_t kMemoryPanelWidth = 32;

// out[i][n] (+)= sum_k rows[i][k] panels[n / 32][k][n % 32] for i < m, n < width: `rows` m x depth
// with rows `row_stride` floats apart, `panels` ceil(width / 32) panels of depth x 32 floats
// (columns past `width` zero), `out` m x width with rows `out_stride` apart. Splits the rows over
// LibTorch's threads. Call only where simd::instruction_set() is AVX-512F.
void memory_panel_products(const float* rows, std::int64_t m, std::int64_t row_stride, std::int64_t depth,
                           const float* panels, std::int64_t width, float* out, std::int64_t out_stride,
                           bool accumulate);

}  // namespace imram
