#pragma once
// The hinge-based triplet loss of VSE++/SCAN/IMRAM over a batch's (images x captions) scores,
// image i paired with caption i.
#include <torch/types.h>

namespace imram {

// max_violation: only the hardest negative of each positive counts (the authors' setting);
// otherwise all negatives are summed. Both directions, summed over the batch.
torch::Tensor contrastive_loss(const torch::Tensor& scores, double margin, bool max_violation);
// The same with `positives` (B, B) bool marking every pair that is no negative: besides the
// diagonal, a caption and another caption's image when they are the same picture (the authors'
// loss counts those as negatives; train-global, which owes them no parity, does not).
torch::Tensor contrastive_loss(const torch::Tensor& scores, double margin, bool max_violation,
                               const torch::Tensor& positives);

}  // namespace imram
