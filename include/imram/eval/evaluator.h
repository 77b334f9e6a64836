#pragma once
// `imram eval`: score every (image, caption) pair of a split with a model and apply the
// standard protocol (and twin accuracy on synthetic splits that have twins).
#include <torch/types.h>

#include <optional>
#include <string>

#include "imram/data/precomp_dataset.h"
#include "imram/engine/scorer.h"
#include "imram/metrics/recall.h"
#include "imram/model/model_dir.h"

namespace imram {

struct EvalOptions {
  bool fold5 = false;                                // COCO 1K protocol
  bool show_progress = true;                         // progress bar on stderr
  std::size_t memory_budget = std::size_t(1) << 30;  // bytes for the engine's per-block work
  std::string dataset_dir;                           // to find `{split}_scenes.jsonl` (twin accuracy); may be empty
  std::int64_t max_images = 0;                       // > 0: only the first max_images images and their captions
};

struct EvalResult {
  RetrievalMetrics metrics;
  torch::Tensor sims;                   // (images, captions) float32 on the CPU
  std::optional<double> twin_accuracy;  // synthetic splits with twins only
  double seconds = 0;
};

std::int64_t evaluated_images(const PrecompSplit& split, const EvalOptions& options);
// Scores all pairs of `split` (encoding each item once).
torch::Tensor score_split(ImramModelImpl& model, const Vocabulary& vocabulary, const PrecompSplit& split,
                          const EvalOptions& options);
EvalResult evaluate(ImramModelImpl& model, const Vocabulary& vocabulary, const PrecompSplit& split,
                    const EvalOptions& options);
// The same protocol with the global-embedding head's cosine instead of IMRAM's score (the first
// stage of two-stage search, alone). The model must have a global head.
EvalResult evaluate_global(ImramModelImpl& model, const Vocabulary& vocabulary, const PrecompSplit& split,
                           const EvalOptions& options);
// The metrics (and twin accuracy) of scores already computed for `split` (seconds left 0).
EvalResult evaluate_scores(torch::Tensor sims, const PrecompSplit& split, const EvalOptions& options);
// The eval JSON (same schema as `imram metrics --json`) plus "twin_accuracy" when known.
std::string eval_json(const EvalResult& result);

}  // namespace imram
