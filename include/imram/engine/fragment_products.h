#pragma once
// The small per-item products of the engine's few-query-rows route (engine/matching.h: one query
// against a shortlist), with each item's fragments read as stored, float32 or float16. Per item
// they are slivers of a GEMM (a 14-word caption against 36 regions); BLAS packs both operands
// for each of them and ran them at a quarter to a third of the machine's rate, and a float16 store had to be
// widened first, which wrote and read the candidates twice over (docs/engine.md).
//
// Every output is summed in one fixed order whatever the blocking, the thread split or the
// instruction set (engine/simd.h), so an item's products do not depend on the other items of
// the call.
#include <torch/types.h>

#include "imram/model/config.h"

namespace imram {

// out[b] = lhs[b] rhs[b]^T: lhs (B, m, d) or (1, m, d) for one lhs against every item, rhs
// (B, n, d); each float32 or float16 with its last dimension contiguous. out: (B, m, n) float32,
// rows contiguous.
void fragment_dots(const torch::Tensor& lhs, const torch::Tensor& rhs, torch::Tensor& out);

// out[b] = fragments[b] fragments[b]^T, each pair's dot product computed once: (B, n, n).
void fragment_grams(const torch::Tensor& fragments, torch::Tensor& out);

// out[b] = weights[b] values[b] (+ out[b] when accumulating): weights (B, m, n) float32, values
// (B, n, w) float32 or float16 with its last dimension contiguous, out (B, m, w) float32 with
// rows contiguous.
void weighted_fragments(const torch::Tensor& weights, const torch::Tensor& values, torch::Tensor& out, bool accumulate);

// The raw scores of the first step, (B, A, n_q, n_c): given, or looked up in a table by codes
// (an index's codes, search/fragment_codes.h): raw[b, 0, j, c] = table[codes[b, c], j] when the
// codes are the context items' (codes (B, n_c), table (K, n_q), one query item), or raw[0, a, j, c] =
// table[codes[a, j], c] when they are the query items' (codes (A, n_q), table (K, n_c), one context item).
struct FirstStepRaw {
  torch::Tensor scores;  // float32, or undefined when looked up
  torch::Tensor table;   // float32 (K, width)
  torch::Tensor codes;   // int64
  bool codes_of_context = true;
};

// IMRAM's first step of every (context item b, query item a) pair from its raw scores and the
// context item's Gram matrix, one pair at a time in cache (the fused form of
// first_step_from_products, engine/matching.h): raw as above, gram (B, n_c, n_c) float32 or
// float16, query_mask and query_squared_norms (A, n_q) float32, context_padding (B, n_c) bool or
// undefined, all contiguous; out (B, A) float32. Its exponentials are simd.h's (2 ulp).
void first_step_pairs(const FirstStepRaw& raw, const torch::Tensor& gram, const torch::Tensor& query_mask,
                      const torch::Tensor& query_squared_norms, const torch::Tensor& context_padding,
                      RawFeatureNorm norm, double lambda, torch::Tensor& out);

}  // namespace imram
