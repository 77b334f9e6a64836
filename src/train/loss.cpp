#include "imram/train/loss.h"

#include <torch/torch.h>

namespace imram {

torch::Tensor contrastive_loss(const torch::Tensor& scores, double margin, bool max_violation) {
  return contrastive_loss(scores, margin, max_violation,
                          torch::eye(scores.size(0), scores.options().dtype(torch::kBool)));
}

torch::Tensor contrastive_loss(const torch::Tensor& scores, double margin, bool max_violation,
                               const torch::Tensor& is_positive) {
  const auto diagonal = scores.diagonal().view({scores.size(0), 1});
  const auto positives_of_rows = diagonal.expand_as(scores);         // S_ii for row i
  const auto positives_of_columns = diagonal.t().expand_as(scores);  // S_jj for column j
  // Row i: image i against every other caption; column j: caption j against every other image.
  auto cost_captions = (margin + scores - positives_of_rows).clamp_min(0).masked_fill(is_positive, 0);
  auto cost_images = (margin + scores - positives_of_columns).clamp_min(0).masked_fill(is_positive, 0);
  if (max_violation) {
    cost_captions = std::get<0>(cost_captions.max(1));
    cost_images = std::get<0>(cost_images.max(0));
  }
  return cost_captions.sum() + cost_images.sum();
}

}  // namespace imram
