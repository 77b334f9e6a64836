#pragma once
// The engine's inference path on the CPU: the same iterative matching as
// iterative_matching() (engine/scorer.h), same arguments, same result within float rounding,
// but without autograd and organised for the cache: one context item at a time per thread, so
// that its (query rows x 2d) gate pre-activations stay in cache from the matrix product that
// makes them to the fused gated update that consumes them. score_pairs() takes this path for
// float32 CPU tensors when no gradient is recorded. `context_halves` may bring
// memory.context_half(context) when the caller reuses it across blocks (undefined: computed).
#include <torch/types.h>

#include "imram/model/config.h"
#include "imram/model/memory.h"

namespace imram {

torch::Tensor iterative_matching_cpu(const torch::Tensor& query, const torch::Tensor& query_mask,
                                     const torch::Tensor& context, const torch::Tensor& context_padding,
                                     const MemoryDistillation& memory, const ModelConfig& config,
                                     const torch::Tensor& context_halves = {});

}  // namespace imram
