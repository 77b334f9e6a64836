#include "imram/engine/matching.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <array>
#include <atomic>
#include <optional>

#include "imram/engine/fragment_products.h"
#include "imram/engine/fused_gate.h"
#include "imram/error.h"
#include "imram/model/attention.h"
#include "imram/model/image_encoder.h"
#include "imram/runtime/parallel.h"
#include "imram/util/blas.h"

namespace imram {

std::string to_string(EnginePath path) {
  switch (path) {
    case EnginePath::Automatic:
      return "auto";
    case EnginePath::FusedCpu:
      return "fused_cpu";
    case EnginePath::Tensor:
      return "tensor";
  }
  return "auto";
}

EnginePath parse_engine_path(const std::string& name) {
  if (name == "auto") return EnginePath::Automatic;
  if (name == "fused_cpu") return EnginePath::FusedCpu;
  if (name == "tensor") return EnginePath::Tensor;
  throw Error("unknown engine path '" + name + "' (auto, fused_cpu or tensor)");
}

EnginePath resolve_engine_path(EnginePath requested, const torch::Tensor& sample) {
  const bool grad = torch::GradMode::is_enabled();
  const bool cpu = sample.device().is_cpu(), float32 = sample.scalar_type() == torch::kFloat32;
  if (requested == EnginePath::Automatic) return !grad && cpu && float32 ? EnginePath::FusedCpu : EnginePath::Tensor;
  if (requested == EnginePath::FusedCpu) {
    if (grad)
      throw Error(
          "the fused_cpu engine path computes no gradients: score under torch::NoGradGuard, or use the tensor path");
    if (!cpu) throw Error("the fused_cpu engine path runs on the CPU, and the tensors are on " + sample.device().str());
    if (!float32) throw Error("the fused_cpu engine path computes in float32 only");
  }
  return requested;
}

std::string to_string(EngineRoute route) {
  const char* products = route.products == BlockProducts::Tensor         ? "tensor"
                         : route.products == BlockProducts::ItemwiseBlas ? "itemwise"
                                                                         : "fragments";
  const char* context = route.context == ContextTerm::None            ? "no_memory"
                        : route.context == ContextTerm::ContextHalves ? "context_halves"
                                                                      : "projected";
  return std::string(products) + "/" + context;
}

std::vector<EngineRoute> all_engine_routes() {
  std::vector<EngineRoute> routes;
  for (const auto products : {BlockProducts::Tensor, BlockProducts::ItemwiseBlas, BlockProducts::FragmentKernels})
    for (const auto context : {ContextTerm::None, ContextTerm::ContextHalves, ContextTerm::ProjectedAttended})
      if (products != BlockProducts::Tensor || context != ContextTerm::ProjectedAttended)
        routes.push_back({products, context});
  return routes;
}

namespace {

// Query rows (query items x fragments) up to which the fused path runs a block's products over all
// its pairs at once: one caption or image against many items.
constexpr std::int64_t kFewQueryRows = 64;

// Calls of iterative_matching per route since the process started, indexed by products x context term.
std::array<std::atomic<std::int64_t>, 9> route_tally{};

std::size_t tally_slot(EngineRoute route) { return std::size_t(route.products) * 3 + std::size_t(route.context); }

}  // namespace

EngineRoute choose_route(EnginePath resolved, std::int64_t query_rows, std::int64_t context_fragments, int steps,
                         bool context_halves_given, const std::optional<EngineRoute>& forced) {
  const bool memory_steps = steps > 1;
  if (forced) {
    const auto name = to_string(*forced);
    if ((forced->products == BlockProducts::Tensor) != (resolved == EnginePath::Tensor))
      throw Error("engine route " + name + " is not on the " + to_string(resolved) + " engine path");
    if ((forced->context == ContextTerm::None) == memory_steps)
      throw Error("engine route " + name + (memory_steps ? " updates no memory, and K > 1" : " needs K > 1"));
    if (forced->context == ContextTerm::ProjectedAttended && context_halves_given)
      throw Error("engine route " + name + " computes the context term itself, and the context halves are given");
    return *forced;
  }
  if (resolved == EnginePath::Tensor)
    return {BlockProducts::Tensor, memory_steps ? ContextTerm::ContextHalves : ContextTerm::None};
  const auto products = query_rows <= kFewQueryRows ? BlockProducts::FragmentKernels : BlockProducts::ItemwiseBlas;
  if (!memory_steps) return {products, ContextTerm::None};
  const bool project = !context_halves_given && projects_attended_context(query_rows, context_fragments, steps);
  return {products, project ? ContextTerm::ProjectedAttended : ContextTerm::ContextHalves};
}

std::vector<std::pair<EngineRoute, std::int64_t>> engine_route_counts() {
  std::vector<std::pair<EngineRoute, std::int64_t>> counts;
  for (const auto route : all_engine_routes()) counts.emplace_back(route, route_tally[tally_slot(route)].load());
  return counts;
}

torch::Tensor widened(const torch::Tensor& items) {
  return items.defined() && items.scalar_type() == torch::kHalf ? items.to(torch::kFloat32) : items;
}

MatchingQueries::MatchingQueries(const torch::Tensor& query_in, const torch::Tensor& query_mask,
                                 const MemoryDistillation& memory, const ModelConfig& config,
                                 const torch::Tensor& cached_halves)
    : query(widened(query_in).contiguous()), mask(query_mask.contiguous()) {
  squared_norms = query.pow(2).sum(-1);
  valid = mask.sum(1);
  if (config.iteration_steps > 1) {
    halves = cached_halves.defined() ? widened(cached_halves).reshape({-1, 2 * query.size(2)}).contiguous()
                                     : memory.query_half(query.view({-1, query.size(2)})).contiguous();
    bias = memory.query_bias().contiguous();
  }
}

bool projects_attended_context(std::int64_t query_rows, std::int64_t context_fragments, int steps) {
  return steps > 1 && std::int64_t(steps - 1) * query_rows < context_fragments;
}

namespace {

// One item's matrix as BLAS reads it: rows or columns contiguous, `lead` apart.
struct BlasMatrix {
  const float* data;
  int lead;
  bool column_major;
};

// Every item of a (B, rows, columns) float32 tensor in BLAS's terms, or nothing when neither its
// rows nor its columns are contiguous.
std::optional<BlasMatrix> blas_layout(const torch::Tensor& batch) {
  const auto rows = batch.size(1), columns = batch.size(2);
  if (batch.stride(2) == 1 && batch.stride(1) >= std::max<std::int64_t>(1, columns))
    return BlasMatrix{batch.data_ptr<float>(), int(batch.stride(1)), false};
  if (batch.stride(1) == 1 && batch.stride(2) >= std::max<std::int64_t>(1, rows))
    return BlasMatrix{batch.data_ptr<float>(), int(batch.stride(2)), true};
  return std::nullopt;
}

// out[b] = lhs[b] rhs[b] (+ out[b] when accumulating) for every item b, one BLAS call per item
// with the items split over threads. The calls go to BLAS directly: a LibTorch mm per item costs
// more in dispatch and views than the product itself when items are small (a 16 x 128 x 16 Gram
// matrix: 5.5 us through torch::mm_out, 1.9 us as sgemm, 5,000 items on 2 threads), and LibTorch's
// CPU bmm ran the re-rank's products of one query against a hundred candidates (d = 1024) at
// about a fifth of the GEMM rate (docs/search.md).
void itemwise_products(torch::Tensor& out, const torch::Tensor& lhs_in, const torch::Tensor& rhs_in, bool accumulate) {
  auto lhs_layout = blas_layout(lhs_in), rhs_layout = blas_layout(rhs_in);
  const auto lhs = lhs_layout ? lhs_in : lhs_in.contiguous(), rhs = rhs_layout ? rhs_in : rhs_in.contiguous();
  if (!lhs_layout) lhs_layout = blas_layout(lhs);
  if (!rhs_layout) rhs_layout = blas_layout(rhs);
  TORCH_INTERNAL_ASSERT(out.stride(2) == 1, "itemwise_products writes rows");
  const int m = int(lhs.size(1)), k = int(lhs.size(2)), n = int(rhs.size(2));
  if (m == 0 || n == 0 || lhs.size(0) == 0) return;
  if (k == 0) {
    if (!accumulate) out.zero_();
    return;
  }
  const auto lhs_step = lhs.stride(0), rhs_step = rhs.stride(0), out_step = out.stride(0);
  float* const out_data = out.data_ptr<float>();
  const int out_lead = int(out.stride(1));
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  // BLAS is column-major: the row-major out = lhs rhs is out^T = rhs^T lhs^T to it.
  const char rhs_op = rhs_layout->column_major ? 'T' : 'N', lhs_op = lhs_layout->column_major ? 'T' : 'N';
  // Raw BLAS on raw pointers: no autograd state to carry into the workers.
  at::parallel_for(0, lhs.size(0), 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b)
      sgemm_(&rhs_op, &lhs_op, &n, &m, &k, &one, rhs_layout->data + b * rhs_step, &rhs_layout->lead,
             lhs_layout->data + b * lhs_step, &lhs_layout->lead, &beta, out_data + b * out_step, &out_lead);
  });
}

torch::Tensor itemwise_products(const torch::Tensor& lhs, const torch::Tensor& rhs) {
  auto out = torch::empty({lhs.size(0), lhs.size(1), rhs.size(2)}, lhs.options());
  itemwise_products(out, lhs, rhs, false);
  return out;
}

}  // namespace

torch::Tensor step_similarity(const torch::Tensor& alpha, const torch::Tensor& raw_original,
                              const torch::Tensor& attended_sq, const torch::Tensor& query_squared_norms,
                              const torch::Tensor& query_mask, const torch::Tensor& query_valid) {
  const auto A = query_mask.size(0), nq = query_mask.size(1);
  const auto dots = (alpha * raw_original).sum(-1);  // q0 . a
  const auto cosines = dots / (query_squared_norms.view({1, A, nq}) * attended_sq).clamp_min(1e-16).sqrt();
  return (cosines * query_mask.view({1, A, nq})).sum(-1) / query_valid.view({1, A});
}

torch::Tensor first_step_from_products(const FirstStepRaw& given, const torch::Tensor& gram,
                                       const torch::Tensor& query_mask, const torch::Tensor& query_squared_norms,
                                       const torch::Tensor& context_padding, const ModelConfig& config,
                                       EnginePath path) {
  const auto sample = given.scores.defined() ? given.scores : given.table;
  if (resolve_engine_path(path, sample) == EnginePath::FusedCpu) {
    FirstStepRaw raw = given;
    for (auto* t : {&raw.scores, &raw.table, &raw.codes})
      if (t->defined()) *t = t->contiguous();
    const auto pairs = raw.scores.defined() ? raw.scores.size(0) * raw.scores.size(1) : raw.codes.size(0);
    auto out = torch::empty({pairs}, sample.options());
    first_step_pairs(raw, gram.contiguous(), query_mask.contiguous(), query_squared_norms.contiguous(),
                     context_padding.defined() ? context_padding.contiguous() : context_padding,
                     config.raw_feature_norm, config.lambda_softmax, out);
    if (raw.scores.defined()) return out.view({raw.scores.size(0), raw.scores.size(1)});
    return raw.codes_of_context ? out.view({pairs, 1}) : out.view({1, pairs});
  }
  // The tensor path looks the raw scores up for every pair at once.
  torch::Tensor raw = given.scores;
  if (!raw.defined()) {
    const auto items = given.codes.size(0), fragments = given.codes.size(1), width = given.table.size(1);
    const auto rows = given.table.index_select(0, given.codes.reshape({-1})).view({items, fragments, width});
    raw = given.codes_of_context ? rows.transpose(1, 2).unsqueeze(1) : rows.unsqueeze(0);
  }
  const auto B = raw.size(0), A = raw.size(1), nq = raw.size(2), nc = raw.size(3);
  const auto padding = context_padding.defined() ? context_padding.view({B, 1, 1, nc}) : torch::Tensor();
  const auto alpha =
      attention_weights(normalize_raw_scores(raw, config.raw_feature_norm, query_mask.view({1, A, nq, 1})),
                        config.lambda_softmax, padding);
  const auto attended_sq =
      (torch::bmm(alpha.reshape({B, A * nq, nc}), widened(gram)).view({B, A, nq, nc}) * alpha).sum(-1);
  return step_similarity(alpha, raw, attended_sq, query_squared_norms, query_mask, query_mask.sum(1));
}

namespace {

// Steps of one block of context items, in the engine's layout [b, a, q, c]: context item b,
// query item a, query fragment q, context fragment c, so that every product is one batched GEMM
// over b. The shortcuts (docs/engine.md), all exact:
//  - Step similarity without the d-dimensional attended vector: q0_q . c_q = sum_c alpha_qc
//    (q0_q . C_c), the step-1 raw scores reused at every step, and |c_q|^2 = alpha_q^T G alpha_q
//    with the small Gram matrix G = C C^T of each context item.
//  - Memory update without the per-pair context product: W_c c = alpha (C W_c^T), the context
//    half computed once per context item; the query half of q0 is per query item.
//  - The last step's memory update is skipped; K = 1 touches no memory layer at all.
// The fused paths differ only in the memory update: the products accumulate into one buffer and
// the gate is one pass (engine/fused_gate.h) instead of LibTorch's separate ops.
torch::Tensor match_block(const MatchingQueries& queries, const torch::Tensor& context,
                          const torch::Tensor& context_padding, const torch::Tensor& context_halves,
                          const EngineRoute& route, const MemoryDistillation& memory, const ModelConfig& config,
                          MatchingTrace* trace) {
  const auto A = queries.query.size(0), nq = queries.query.size(1), d = queries.query.size(2);
  const auto B = context.size(0), nc = context.size(1);
  const int K = config.iteration_steps;
  const auto products = route.products;
  const bool project_attended = route.context == ContextTerm::ProjectedAttended;
  const bool fused = products != BlockProducts::Tensor, kernels = products == BlockProducts::FragmentKernels;
  const auto mask = queries.mask.view({1, A, nq, 1});
  const auto padding = context_padding.defined() ? context_padding.view({B, 1, 1, nc}) : torch::Tensor();
  const auto query_rows = queries.query.view({A * nq, d});
  const auto context_t = kernels ? torch::Tensor() : context.transpose(1, 2);  // (B, d, n_c)
  const auto rows_of = [&](std::int64_t columns) { return torch::empty({B, A * nq, columns}, query_rows.options()); };

  // lhs (B, A n_q, d) against the context fragments: (B, A n_q, n_c).
  const auto against_context = [&](const torch::Tensor& lhs) {
    if (products == BlockProducts::Tensor) return torch::matmul(lhs, context_t);
    if (products == BlockProducts::ItemwiseBlas) return itemwise_products(lhs.expand({B, A * nq, d}), context_t);
    auto out = rows_of(nc);
    fragment_dots(lhs, context, out);
    return out;
  };
  // weights (B, A n_q, n_c) times per-item values (B, n_c, w), into `out` or a new tensor.
  const auto weighted = [&](const torch::Tensor& weights, const torch::Tensor& values, torch::Tensor out,
                            bool accumulate) {
    if (products == BlockProducts::Tensor)
      return accumulate ? out.baddbmm_(weights, values) : torch::bmm(weights, values);
    if (!out.defined()) out = rows_of(values.size(2));
    if (kernels)
      weighted_fragments(weights, values, out, accumulate);
    else
      itemwise_products(out, weights, values, accumulate);
    return out;
  };
  // Step-1 raw scores q0 . C for every pair, (B, A n_q, n_c). With per-item BLAS calls rather
  // than one GEMM over every fragment: OpenBLAS first copied all the candidates into its packed
  // layout and the result needed a transposed copy (step 1 of one query against 5,000 candidates
  // at d = 128 went from 50-60 to 18-19 ms, alternating runs; docs/search.md).
  const auto raw_original = against_context(query_rows.unsqueeze(0)).view({B, A, nq, nc});
  // Projecting the attended context (fused path only) needs each pair's attended vectors anyway,
  // and their norms come from them; otherwise from the Gram matrices.
  torch::Tensor gram;  // (B, n_c, n_c)
  if (!project_attended) {
    if (kernels) {
      gram = torch::empty({B, nc, nc}, query_rows.options());
      fragment_grams(context, gram);
    } else {
      gram = fused ? itemwise_products(context, context_t) : torch::bmm(context, context_t);
    }
  }

  torch::Tensor current;  // q^{k-1} per pair, (B, A n_q, d), from step 2 on
  torch::Tensor preactivation;
  std::vector<torch::Tensor> steps;
  for (int k = 1; k <= K; ++k) {
    const auto raw = k == 1 ? raw_original : against_context(current).view({B, A, nq, nc});
    const auto alpha =
        attention_weights(normalize_raw_scores(raw, config.raw_feature_norm, mask), config.lambda_softmax, padding);
    const auto alpha_rows = alpha.view({B, A * nq, nc});
    if (trace) trace->attention.push_back(alpha);
    const auto attended =
        project_attended ? weighted(alpha_rows, context, {}, false) : torch::Tensor();  // c, (B, A n_q, d)
    const auto attended_sq =
        project_attended ? attended.pow(2).sum(-1).view({B, A, nq})
                         : (weighted(alpha_rows, gram, {}, false).view({B, A, nq, nc}) * alpha).sum(-1);  // |c|^2
    steps.push_back(
        step_similarity(alpha, raw_original, attended_sq, queries.squared_norms, queries.mask, queries.valid));
    if (k == K) break;

    // The memory update: [o_pre ; g_pre] = W_c c + W_q q (+ biases), then the gate.
    if (fused) {
      // The gate pass is split over threads by context item (a no-op inside the per-item loop of
      // iterative_matching, which is parallel already).
      const auto attended_rows = project_attended ? attended.view({B * A * nq, d}) : torch::Tensor();
      if (k == 1) {
        preactivation = rows_of(2 * d);
        if (project_attended) {
          auto preactivation_rows = preactivation.view({B * A * nq, 2 * d});
          memory.products_into(MemoryColumns::Context, attended_rows, preactivation_rows, false);
        } else {
          weighted(alpha_rows, context_halves, preactivation, false);
        }
        current = torch::empty({B, A * nq, d}, query_rows.options());
        parallel_for_in_callers_mode(0, B, 1, [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t b = begin; b < end; ++b) {
            auto out = current[b];
            fused_gated_update(preactivation[b], queries.halves, query_rows, out, config.imram_norm);
          }
        });
      } else {
        auto preactivation_rows = preactivation.view({B * A * nq, 2 * d});
        memory.products_into(MemoryColumns::Query, current.view({B * A * nq, d}), preactivation_rows, false);
        if (project_attended)
          memory.products_into(MemoryColumns::Context, attended_rows, preactivation_rows, true);
        else
          weighted(alpha_rows, context_halves, preactivation, true);
        parallel_for_in_callers_mode(0, B, 1, [&](std::int64_t begin, std::int64_t end) {
          auto rows = current.narrow(0, begin, end - begin);
          fused_gated_update(preactivation.narrow(0, begin, end - begin), queries.bias, rows, rows, config.imram_norm);
        });
      }
      continue;
    }
    auto summed =
        torch::bmm(alpha_rows, context_halves) + (k == 1 ? queries.halves.unsqueeze(0) : memory.query_half(current));
    if (trace) trace->gate_mean.push_back(memory.gate_values(summed).mean(-1).view({B, A, nq}));
    current = memory.update(k == 1 ? query_rows.unsqueeze(0) : current, summed);
    if (config.imram_norm) current = l2norm(current, -1);
  }
  return torch::stack(steps).transpose(1, 2);  // (K, A, B)
}

}  // namespace

torch::Tensor iterative_matching(const torch::Tensor& query, const torch::Tensor& query_mask,
                                 const torch::Tensor& context_in, const torch::Tensor& context_padding,
                                 const MemoryDistillation& memory, const ModelConfig& config,
                                 const MatchingOptions& options) {
  const MatchingQueries queries(query, query_mask, memory, config, options.query_halves);
  const auto resolved = resolve_engine_path(options.path, queries.query);
  const bool memory_steps = config.iteration_steps > 1;
  const auto route = choose_route(resolved, query.size(0) * query.size(1), context_in.size(1), config.iteration_steps,
                                  memory_steps && options.context_halves.defined(), options.route);
  ++route_tally[tally_slot(route)];
  // Few query rows (one query against a shortlist): per item, the products would be slivers of a
  // GEMM, so the whole block goes through each product at once, in the fragment kernels, which
  // read the context items as they are stored; only the gate pass is per item.
  const bool as_stored = route.products == BlockProducts::FragmentKernels;
  const auto as_read = [as_stored](const torch::Tensor& items) {
    if (!items.defined()) return items;
    if (as_stored) return items.size(2) <= 1 || items.stride(2) == 1 ? items : items.contiguous();
    return widened(items).contiguous();
  };
  const auto context = as_read(context_in);
  auto context_halves = memory_steps ? as_read(options.context_halves) : torch::Tensor();
  if (route.context == ContextTerm::ContextHalves && !context_halves.defined())
    context_halves = memory.context_half(widened(context)).contiguous();
  if (route.products == BlockProducts::Tensor)
    return match_block(queries, context, context_padding, context_halves, route, memory, config, options.trace);
  if (options.trace) throw Error("the fused_cpu engine path keeps no trace: explain with the tensor path");
  if (route.products == BlockProducts::FragmentKernels)
    return match_block(queries, context, context_padding, context_halves, route, memory, config, nullptr);

  // Otherwise one context item per thread at a time: its (query rows x 2d) gate pre-activations
  // stay in cache from the product that makes them to the pass that consumes them.
  const auto B = context.size(0);
  auto steps = torch::empty({config.iteration_steps, query.size(0), B}, query.options());
  parallel_for_in_callers_mode(0, B, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b) {
      const auto item_padding = context_padding.defined() ? context_padding.narrow(0, b, 1) : torch::Tensor();
      const auto item_halves = context_halves.defined() ? context_halves.narrow(0, b, 1) : torch::Tensor();
      steps.narrow(2, b, 1).copy_(
          match_block(queries, context.narrow(0, b, 1), item_padding, item_halves, route, memory, config, nullptr));
    }
  });
  return steps;
}

}  // namespace imram
