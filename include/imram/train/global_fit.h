#pragma once
// `imram train-global`: fits only the global-embedding head (model/global_head.h) of a frozen
// model, for models trained without one (imported ones, say). The encoders do not change, so the
// pooled fragment means of every training item are computed once; the head then trains on them
// with the VSE++ hinge (hardest negatives) in seconds per epoch.
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
  std::int64_t dim = 0;          // head size for a model without one; 0: embed_size
  std::uint64_t seed = 1;
  bool show_progress = true;
};

struct GlobalFitSummary {
  double first_epoch_loss = 0;
  double last_epoch_loss = 0;
  double pooling_seconds = 0;    // encoding and pooling the training items, once
  double fitting_seconds = 0;
};

// Adds a head to `model` when it has none (kept otherwise, and trained further).
GlobalFitSummary fit_global_head(Model& model, const PrecompSplit& train, const GlobalFitOptions& options);

}  // namespace imram
