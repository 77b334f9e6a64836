#include "imram/search/residual_codes.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>

#include "imram/error.h"

namespace imram {

ResidualBuckets train_residual_buckets(const torch::Tensor& residuals, int bits) {
  torch::NoGradGuard no_grad;
  ResidualBuckets out;
  out.bits = bits;
  const auto buckets = std::int64_t(1) << bits;
  auto values = residuals.to(torch::kFloat32).reshape({-1});
  if (values.numel() == 0) throw Error("residual buckets need at least one value");
  constexpr std::int64_t kSample = std::int64_t(1) << 22;
  if (values.numel() > kSample)
    values = values.index_select(
        0, torch::linspace(0, double(values.numel() - 1), kSample, torch::kFloat64).round().to(torch::kInt64));
  const auto sorted = std::get<0>(values.sort()).contiguous();
  const auto n = sorted.numel();
  const auto* v = sorted.data_ptr<float>();
  for (std::int64_t i = 1; i < buckets; ++i) out.cutoffs.push_back(v[std::min(n - 1, i * n / buckets)]);
  // Each value's bucket is the number of cutoffs at or below it: sorted values fill them in order.
  std::vector<double> sums(std::size_t(buckets), 0.0);
  std::vector<std::int64_t> counts(std::size_t(buckets), 0);
  std::size_t bucket = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    while (bucket < out.cutoffs.size() && out.cutoffs[bucket] <= v[i]) ++bucket;
    sums[bucket] += v[i];
    ++counts[bucket];
  }
  for (std::int64_t b = 0; b < buckets; ++b) {
    const auto low = out.cutoffs[std::size_t(std::max<std::int64_t>(0, b - 1))];
    const auto high = out.cutoffs[std::size_t(std::min<std::int64_t>(buckets - 2, b))];
    out.values.push_back(counts[std::size_t(b)] ? float(sums[std::size_t(b)] / double(counts[std::size_t(b)]))
                                                : 0.5f * (low + high));
  }
  return out;
}

torch::Tensor encode_residuals(const torch::Tensor& codebook, const torch::Tensor& rows, const torch::Tensor& codes,
                               const ResidualBuckets& buckets) {
  torch::NoGradGuard no_grad;
  const auto n = rows.size(0), d = rows.size(1);
  if (!residual_bits_fit(buckets.bits, d))
    throw Error("residuals of " + std::to_string(buckets.bits) + " bits do not pack " + std::to_string(d) +
                " values into whole bytes");
  const auto residuals = rows.to(torch::kFloat32) - codebook.index_select(0, codes.to(torch::kInt64));
  const auto cutoffs = torch::tensor(buckets.cutoffs, torch::kFloat32);
  const auto per_byte = 8 / buckets.bits;
  // The bucket of each value: how many cutoffs are at or below it.
  const auto index = torch::searchsorted(cutoffs, residuals.contiguous(), /*out_int32=*/false, /*right=*/true);
  const auto shifts = torch::arange(per_byte, torch::kInt64) * buckets.bits;
  return torch::bitwise_left_shift(index.view({n, d / per_byte, per_byte}), shifts).sum(2).to(torch::kUInt8);
}

void decode_fragments(const float* codebook, std::int64_t d, const std::int32_t* codes, const std::uint8_t* packed,
                      std::int64_t n, const ResidualBuckets& buckets, float* out) {
  const int per_byte = 8 / buckets.bits, mask = (1 << buckets.bits) - 1;
  // Every byte's values at once: one lookup per byte instead of a shift and mask per value.
  std::vector<float> table(std::size_t(256 * per_byte));
  for (int byte = 0; byte < 256; ++byte)
    for (int k = 0; k < per_byte; ++k)
      table[std::size_t(byte * per_byte + k)] = buckets.values[std::size_t((byte >> (k * buckets.bits)) & mask)];
  const auto row_bytes = buckets.bytes_per_fragment(d);
  at::parallel_for(0, n, 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const float* centroid = codebook + std::int64_t(codes[i]) * d;
      const std::uint8_t* bytes = packed + i * row_bytes;
      float* row = out + i * d;
      for (std::int64_t b = 0; b < row_bytes; ++b) {
        const float* add = table.data() + std::size_t(bytes[b]) * std::size_t(per_byte);
        for (int k = 0; k < per_byte; ++k) row[b * per_byte + k] = centroid[b * per_byte + k] + add[k];
      }
    }
  });
}

}  // namespace imram
