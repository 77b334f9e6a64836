#pragma once
// Compressed fragments (docs/index.md#residuals): each encoded region or word kept as its
// centroid (search/fragment_codes.h) plus its residual, the difference, quantized to a few bits
// per dimension. The buckets are shared by every dimension, as ColBERTv2's: 2^bits of them,
// bounded by quantiles of the residuals' values and each standing for the mean of the values it
// held. A fragment decodes to its centroid plus its buckets' values; exactly when every fragment is
// its own centroid (all residuals 0). An index may keep these instead of its exact store.
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "imram/search/residual_buckets.h"

namespace imram {

// Buckets of `bits` for the values of `residuals` (any shape, float32): cutoffs at the quantiles
// i / 2^bits of (up to 2^22 sampled) values, each bucket's value the mean of the values in it
// (the midpoint of its bounds when none are).
ResidualBuckets train_residual_buckets(const torch::Tensor& residuals, int bits);

// `rows` (n, d) minus their centroids codebook[codes] (codes int32), quantized and packed: (n,
// bytes_per_fragment) uint8, dimension j at bits [j * bits, (j + 1) * bits) of the row.
torch::Tensor encode_residuals(const torch::Tensor& codebook, const torch::Tensor& rows, const torch::Tensor& codes,
                               const ResidualBuckets& buckets);

// `n` fragments decoded into `out` (n x d floats, row-major): codebook rows (centroids x d) by
// `codes`, plus the packed residuals (n x bytes_per_fragment bytes).
void decode_fragments(const float* codebook, std::int64_t d, const std::int32_t* codes, const std::uint8_t* packed,
                      std::int64_t n, const ResidualBuckets& buckets, float* out);

}  // namespace imram
