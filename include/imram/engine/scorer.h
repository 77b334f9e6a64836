#pragma once
// The scoring engine: S(image, caption) for every pair of two encoded sets, IMRAM's iterative
// matching computed block by block (images x captions) with large batched products and masks
// for ragged lengths. Differentiable: training scores its batches through the same code.
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "imram/engine/matching.h"
#include "imram/model/imram.h"

namespace imram {

struct ScoreOptions {
  std::int64_t image_block = 0;                      // images per block; 0 = chosen from memory_budget
  std::int64_t caption_block = 0;                    // captions per block; 0 = chosen from memory_budget
  std::size_t memory_budget = std::size_t(1) << 30;  // bytes of per-block intermediates
  bool keep_steps = false;                           // also return every step's similarity
  int steps = 0;                                     // score only the first `steps` steps (0: all K of the model)
  // Record gradients of the scores (training). Scoring runs in this mode whatever the caller's
  // own: a caller that forgets a NoGradGuard gets the fused path, not an autograd graph, and one
  // that wants gradients says so here. The fused path refuses them.
  bool gradients = false;
  // Automatic: the fused CPU path for float32 CPU tensors without gradients, else the tensor
  // path (engine/matching.h).
  EnginePath path = EnginePath::Automatic;
  // Force one route of the path on every block (tests and benchmarks; engine/matching.h).
  std::optional<EngineRoute> route;
  // Called after each block with (pairs done, pairs total).
  std::function<void(std::int64_t, std::int64_t)> progress;
};

struct PairScores {
  torch::Tensor total;                      // (N, M) float32: S = sum of the steps (of both directions in full mode)
  torch::Tensor steps_t2i;                  // (K, N, M) text-IMRAM steps, when keep_steps and the mode uses them
  torch::Tensor steps_i2t;                  // (K, N, M) image-IMRAM steps, likewise
  EnginePath path = EnginePath::Automatic;  // the path that ran (never Automatic)
};

PairScores score_pairs(const ImramModelImpl& model, const EncodedImages& images, const EncodedCaptions& captions,
                       const ScoreOptions& options = {});

// The per-pair memory the engine needs, used to size blocks.
std::size_t bytes_per_pair(const ModelConfig& config, std::int64_t regions, std::int64_t words);

}  // namespace imram
