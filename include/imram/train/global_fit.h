#pragma once
// `imram train-global`: fits only the global-embedding head (model/global_head.h) of a frozen
// model, for models trained without one (imported ones, say). The encoders do not change, so every
// training item is encoded once (kept in float16: d * 2 bytes a region or word); the head then
// trains on those fragments with the VSE++ hinge (hardest negatives) in seconds per epoch.
#include <cstdint>
#include <string>

#include "imram/data/precomp_dataset.h"
#include "imram/model/model_dir.h"

namespace imram {

struct GlobalFitOptions {
  int epochs = 10;
  std::int64_t batch_size = 128;
  double lr = 2e-3;
  double margin = 0.2;
  std::int64_t dim = 0;                        // head size for a model without one; 0: embed_size
  GlobalPooling pooling = GlobalPooling::Gpo;  // for a model without a head
  // Distillation (docs/search.md): besides the hinge, a listwise KL divergence that teaches the
  // head IMRAM's own order of each item's `distill_candidates` likeliest confusions (mined once
  // by the mean of the frozen fragments, scored once by the frozen model), weighted by `distill`
  // (0: off), over the first `distill_queries` queries of each batch.
  double distill = 0;
  std::int64_t distill_candidates = 16;
  std::int64_t distill_queries = 32;
  double distill_temperature = 0.05;
  std::uint64_t seed = 1;
  bool show_progress = true;
};

struct GlobalFitSummary {
  double first_epoch_loss = 0;
  double last_epoch_loss = 0;
  double encoding_seconds = 0;  // encoding the training items, once
  double teacher_seconds = 0;   // mining and scoring the distillation candidates, once
  double fitting_seconds = 0;
};

// Adds a head to `model` when it has none (kept otherwise, its pooling too, and trained further).
GlobalFitSummary fit_global_head(Model& model, const PrecompSplit& train, const GlobalFitOptions& options);

}  // namespace imram
