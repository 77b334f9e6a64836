#pragma once
// IMRAM's iterative matching, written once: K steps of attention, step similarity and memory
// update for a block of (query item, context item) pairs, with the exact shortcuts of
// docs/engine.md. Every engine path runs this loop; they differ only in how the gated memory
// update is carried out (EnginePath). The oracle (engine/reference_scorer.h) is the separate,
// literal transcription that tests hold this against.
#include <torch/types.h>

#include <string>
#include <vector>

#include "imram/model/config.h"
#include "imram/model/memory.h"

namespace imram {

// How the engine carries out the memory update, chosen explicitly and resolved in one place:
//  - Tensor: LibTorch tensor ops over the whole block, differentiable, any device;
//  - FusedCpu: the gated update as one vectorised pass per context item (engine/fused_gate.h),
//    float32 on the CPU, no gradients; the context items of a block run in parallel;
//  - Automatic: FusedCpu where it applies (CPU, float32, no gradient recorded), else Tensor.
enum class EnginePath { Automatic, FusedCpu, Tensor };

std::string to_string(EnginePath path);
EnginePath parse_engine_path(const std::string& name);  // "auto", "fused_cpu", "tensor"

// The path that runs for `requested` on tensors like `sample` under the current grad mode.
// Asking for FusedCpu where it cannot run (autograd on, another device, another dtype) is an
// error, never a silent switch to another algorithm.
EnginePath resolve_engine_path(EnginePath requested, const torch::Tensor& sample);

// What iterative_matching computed on its way, for showing it (engine/explain.h): step k's
// attention weights (B, A, n_q, n_c) and, for the steps that update the memory (all but the
// last), the gate's mean over the d dimensions per query fragment (B, A, n_q).
struct MatchingTrace {
  std::vector<torch::Tensor> attention;
  std::vector<torch::Tensor> gate_mean;
};

// Whether the fused path gets the memory layers' context term of each pair as W_c a, its attended
// context a projected at every memory step (query_rows rows per context item and step), rather
// than as alpha (W_c C) from the context item's fragments projected once (context_fragments rows,
// docs/engine.md): with d^2 products dominating, the first is cheaper when the memory steps times
// the query rows are fewer than the context fragments, as for one caption against images.
bool projects_attended_context(std::int64_t query_rows, std::int64_t context_fragments, int steps);

// float16 items (a store's, as stored) as float32; anything else as it is.
torch::Tensor widened(const torch::Tensor& items);

// The query side of a direction, prepared once and shared by every context item it meets.
struct MatchingQueries {
  // `cached_halves`: memory.query_half(query) when the caller has it (a store's memory halves).
  MatchingQueries(const torch::Tensor& query, const torch::Tensor& query_mask, const MemoryDistillation& memory,
                  const ModelConfig& config, const torch::Tensor& cached_halves = {});
  torch::Tensor query;          // (A, n_q, d), contiguous
  torch::Tensor mask;           // (A, n_q) float 0/1
  torch::Tensor squared_norms;  // (A, n_q): |q0|^2
  torch::Tensor valid;          // (A): real fragments per item
  torch::Tensor halves;         // (A n_q, 2d): memory.query_half(q0), when K > 1
  torch::Tensor bias;           // (2d): memory.query_bias(), when K > 1
};

// One direction: query items (A, n_q, d) with query_mask (A, n_q) float 0/1 attend over context
// items (B, n_c, d) with context_padding (B, n_c) bool (or undefined). The items and the halves
// may be float16 (as a store keeps them): the fused path reads few query rows' context as it is,
// everything else is widened first. Returns the K step
// similarities (K, A, B); fills `trace` when given. `path` is resolved here; `context_halves` may
// bring memory.context_half(context) and `query_halves` memory.query_half(query) when the caller
// has them (reused across blocks, or read from a store).
torch::Tensor iterative_matching(const torch::Tensor& query, const torch::Tensor& query_mask,
                                 const torch::Tensor& context, const torch::Tensor& context_padding,
                                 const MemoryDistillation& memory, const ModelConfig& config,
                                 EnginePath path = EnginePath::Automatic, MatchingTrace* trace = nullptr,
                                 const torch::Tensor& context_halves = {}, const torch::Tensor& query_halves = {});

}  // namespace imram
