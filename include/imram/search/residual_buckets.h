#pragma once
// The buckets of compressed residuals (search/residual_codes.h), as an index's manifest records
// them. LibTorch-free, so that fuzz/ can drive the manifest's parser.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "imram/error.h"

namespace imram {

struct ResidualBuckets {
  int bits = 0;                // per dimension: 1, 2, 4 or 8
  std::vector<float> cutoffs;  // 2^bits - 1 ascending bounds: a value v falls in the bucket of the cutoffs <= v
  std::vector<float> values;   // 2^bits: what each bucket decodes to

  std::int64_t bytes_per_fragment(std::int64_t d) const { return d * bits / 8; }

  // Throws naming `source` unless bits is 1, 2, 4 or 8, the vectors have their sizes, every
  // number is finite and the cutoffs ascend.
  void check(const std::string& source) const {
    if (bits != 1 && bits != 2 && bits != 4 && bits != 8)
      throw Error(source + ": residuals of " + std::to_string(bits) + " bits per value (1, 2, 4 or 8)");
    const auto buckets = std::size_t(1) << bits;
    if (cutoffs.size() != buckets - 1 || values.size() != buckets)
      throw Error(source + ": residuals of " + std::to_string(bits) + " bits need " + std::to_string(buckets - 1) +
                  " cutoffs and " + std::to_string(buckets) + " values");
    for (std::size_t i = 0; i < buckets; ++i)
      if (!std::isfinite(values[i]) || (i + 1 < buckets && !std::isfinite(cutoffs[i])))
        throw Error(source + ": a residual bucket is not a finite number");
    for (std::size_t i = 1; i < cutoffs.size(); ++i)
      if (cutoffs[i] < cutoffs[i - 1]) throw Error(source + ": the residual buckets' cutoffs do not ascend");
  }
};

// Whether fragments of d values pack into whole bytes at this width (d * bits a multiple of 8).
inline bool residual_bits_fit(int bits, std::int64_t d) {
  return (bits == 1 || bits == 2 || bits == 4 || bits == 8) && d > 0 && (d * bits) % 8 == 0;
}

}  // namespace imram
