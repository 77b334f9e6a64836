#pragma once
// One optimisation step of IMRAM: encode the batch, score every (image, caption) pair of it,
// hinge loss, backward, gradient-norm clip over all parameters, Adam.
#include <torch/optim/adam.h>
#include <torch/types.h>

#include "imram/model/imram.h"

namespace imram {

struct Batch {
  torch::Tensor features;     // (B, R, D) float32, image i paired with caption i
  torch::Tensor caption_ids;  // (B, L) int64, zero-padded
  torch::Tensor lengths;      // (B) int64, <start>/<end> included
};

struct StepResult {
  double loss = 0;         // the total loss
  double global_loss = 0;  // its global-embedding term before weighting (0 without one)
  double grad_norm = 0;    // total L2 norm of the gradients before clipping
  torch::Tensor scores;    // (B, B) detached
};

struct LossOptions {
  double margin = 0.2;
  bool max_violation = true;
  double grad_clip = 2.0;  // <= 0: no clipping
  // > 0: adds global_weight x the same hinge on the global head's cosine similarities of the
  // batch (VSE++), so that the head learns with the encoders it pools (two-stage search).
  double global_weight = 0;
};

torch::optim::Adam make_optimizer(ImramModelImpl& model, double lr);
void set_learning_rate(torch::optim::Adam& optimizer, double lr);

// Gradient-norm clip over all parameters (grad_clip <= 0: none) and the Adam step, on gradients
// already computed (in a world: summed over the ranks). Returns the norm before clipping.
double apply_gradients(ImramModelImpl& model, torch::optim::Adam& optimizer, double grad_clip);

StepResult train_step(ImramModelImpl& model, torch::optim::Adam& optimizer, const Batch& batch,
                      const LossOptions& options);

}  // namespace imram
