#pragma once
// IMRAM's iterative matching, written once: K steps of attention, step similarity and memory
// update for a block of (query item, context item) pairs, with the exact shortcuts of
// docs/engine.md. Every engine path runs this loop; they differ only in how the gated memory
// update is carried out (EnginePath). The oracle (engine/reference_scorer.h) is the separate,
// literal transcription that tests hold this against.
#include <torch/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "imram/engine/fragment_products.h"
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

// The routes a block of pairs can take through the engine: how its products run, and where the
// memory update's context term W_c a comes from. The path decides the first part, the block's
// shape the rest (choose_route); each route is a different sequence of kernels, so each is tested
// by name (tests/engine/test_engine_routes.cpp) and the command sweep reports which it reached.
enum class BlockProducts {
  Tensor,          // LibTorch's batched products over the whole block (the tensor path)
  ItemwiseBlas,    // one BLAS call per context item, items over threads (many query rows)
  FragmentKernels  // engine/fragment_products.h over every item at once, read as stored (few rows)
};
enum class ContextTerm {
  None,              // K = 1: no memory update
  ContextHalves,     // alpha (W_c C): the context items' halves, given or computed once per item
  ProjectedAttended  // W_c a: each pair's attended context projected at each memory step
};
struct EngineRoute {
  BlockProducts products;
  ContextTerm context;
  bool operator==(const EngineRoute& other) const { return products == other.products && context == other.context; }
};
std::string to_string(EngineRoute route);  // e.g. "itemwise/context_halves"
std::vector<EngineRoute> all_engine_routes();

// The route of a block of `query_rows` query rows (items x fragments) against context items of
// `context_fragments` fragments on the `resolved` path; `forced` (tests, benchmarks) is taken
// as it is where it can run, and is an error where it cannot.
EngineRoute choose_route(EnginePath resolved, std::int64_t query_rows, std::int64_t context_fragments, int steps,
                         bool context_halves_given, const std::optional<EngineRoute>& forced = std::nullopt);

// How many calls of iterative_matching took each route since the process started (what
// IMRAM_ENGINE_ROUTES reports, docs/engine.md#8-routes-and-how-they-are-tested).
std::vector<std::pair<EngineRoute, std::int64_t>> engine_route_counts();

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

// Step k's similarity F_k of each pair, (B, A), from its attention weights alpha (B, A, n_q, n_c),
// the step-1 raw scores q0 . C (B, A, n_q, n_c) and |a|^2 of the attended contexts (B, A, n_q),
// with the query items' |q0|^2 (A, n_q), mask (A, n_q) float 0/1 and real fragments (A): the
// shortcut of docs/engine.md section 2, q0 . a = sum_c alpha_c (q0 . C_c), no attended vector.
torch::Tensor step_similarity(const torch::Tensor& alpha, const torch::Tensor& raw_original,
                              const torch::Tensor& attended_sq, const torch::Tensor& query_squared_norms,
                              const torch::Tensor& query_mask, const torch::Tensor& query_valid);

// One direction's first step, (B, A), from the pairs' raw scores alone: raw (B, A, n_q, n_c) =
// q0 . C, given or looked up (engine/fragment_products.h, FirstStepRaw), the context items' Gram matrices gram (B, n_c, n_c) = C C^T (float32 or float16, as a
// store keeps them), the query items' mask
// (A, n_q) float 0/1 and |q0|^2 (A, n_q), context_padding (B, n_c) bool or undefined. Step 1 needs
// nothing else of the fragments, which is what lets an index's codes (search/fragment_codes.h)
// give it for many candidates without reading them: exact when raw and gram are. The fused CPU
// path runs it one pair at a time in cache (engine/fragment_products.h), the tensor path as
// LibTorch ops over the whole block.
torch::Tensor first_step_from_products(const FirstStepRaw& raw, const torch::Tensor& gram,
                                       const torch::Tensor& query_mask, const torch::Tensor& query_squared_norms,
                                       const torch::Tensor& context_padding, const ModelConfig& config,
                                       EnginePath path = EnginePath::Automatic);
// The raw scores given as a tensor (B, A, n_q, n_c).
inline torch::Tensor first_step_from_products(const torch::Tensor& raw, const torch::Tensor& gram,
                                              const torch::Tensor& query_mask, const torch::Tensor& query_squared_norms,
                                              const torch::Tensor& context_padding, const ModelConfig& config,
                                              EnginePath path = EnginePath::Automatic) {
  FirstStepRaw given;
  given.scores = raw;
  return first_step_from_products(given, gram, query_mask, query_squared_norms, context_padding, config, path);
}

// What iterative_matching may be given beyond the items themselves.
struct MatchingOptions {
  EnginePath path = EnginePath::Automatic;  // resolved here (resolve_engine_path)
  std::optional<EngineRoute> route;         // force a route (choose_route)
  MatchingTrace* trace = nullptr;           // filled when given (tensor path only)
  torch::Tensor context_halves;             // memory.context_half(context), when the caller has it
  torch::Tensor query_halves;               // memory.query_half(query), likewise
};

// One direction: query items (A, n_q, d) with query_mask (A, n_q) float 0/1 attend over context
// items (B, n_c, d) with context_padding (B, n_c) bool (or undefined). The items and the halves
// may be float16 (as a store keeps them): the fragment kernels read them as they are, every other
// route widens them first. Returns the K step similarities (K, A, B). The halves are reused
// across blocks or read from a store; a route that needs absent ones computes them.
torch::Tensor iterative_matching(const torch::Tensor& query, const torch::Tensor& query_mask,
                                 const torch::Tensor& context, const torch::Tensor& context_padding,
                                 const MemoryDistillation& memory, const ModelConfig& config,
                                 const MatchingOptions& options = {});

}  // namespace imram
