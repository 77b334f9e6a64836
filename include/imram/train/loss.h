#pragma once
// The hinge-based triplet loss of VSE++/SCAN/IMRAM over a batch's (images x captions) scores,
// image i paired with caption i.
#include <torch/types.h>

namespace imram {

// max_violation: only the hardest negative of each positive counts (the authors' setting);
// otherwise all negatives are summed. Both directions, summed over the batch.
torch::Tensor contrastive_loss(const torch::Tensor& scores, double margin, bool max_violation);

}  // namespace imram
