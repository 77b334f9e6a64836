#pragma once
// The scoring engine: S(image, caption) for every pair of two encoded sets, IMRAM's iterative
// matching computed block by block (images x captions) with large batched products and masks
// for ragged lengths. Differentiable: training scores its batches through the same code.
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "imram/model/imram.h"

namespace imram {

struct ScoreOptions {
  std::int64_t image_block = 0;    // images per block; 0 = chosen from memory_budget
  std::int64_t caption_block = 0;  // captions per block; 0 = chosen from memory_budget
  std::size_t memory_budget = std::size_t(1) << 30;  // bytes of per-block intermediates
  bool keep_steps = false;         // also return every step's similarity
  // Without gradients on the CPU the engine takes its per-item path (engine/cpu_matching.h);
  // this forces the batched tensor-op formulation instead, which wins when one side is a single
  // item (one query against a shortlist): its products then batch over all pairs.
  bool tensor_path = false;
  // Called after each block with (pairs done, pairs total).
  std::function<void(std::int64_t, std::int64_t)> progress;
};

struct PairScores {
  torch::Tensor total;      // (N, M) float32: S = sum of the steps (of both directions in full mode)
  torch::Tensor steps_t2i;  // (K, N, M) text-IMRAM steps, when keep_steps and the mode uses them
  torch::Tensor steps_i2t;  // (K, N, M) image-IMRAM steps, likewise
};

PairScores score_pairs(const ImramModelImpl& model, const EncodedImages& images,
                       const EncodedCaptions& captions, const ScoreOptions& options = {});

// What iterative_matching computed on its way, for showing it (engine/explain.h): step k's
// attention weights (B, A, n_q, n_c) and, for the steps that update the memory (all but the
// last), the gate's mean over the d dimensions per query fragment (B, A, n_q).
struct MatchingTrace {
  std::vector<torch::Tensor> attention;
  std::vector<torch::Tensor> gate_mean;
};

// One direction for a block: query items (A, n_q, d) with query_mask (A, n_q) float 0/1 attend
// over context items (B, n_c, d) with context_padding (B, n_c) bool (or undefined). Returns
// the K step similarities (K, A, B); fills `trace` when given.
torch::Tensor iterative_matching(const torch::Tensor& query, const torch::Tensor& query_mask,
                                 const torch::Tensor& context, const torch::Tensor& context_padding,
                                 const MemoryDistillation& memory, const ModelConfig& config,
                                 MatchingTrace* trace = nullptr);

// The per-pair memory the engine needs, used to size blocks.
std::size_t bytes_per_pair(const ModelConfig& config, std::int64_t regions, std::int64_t words);

}  // namespace imram
