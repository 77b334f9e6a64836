#include "imram/train/train_step.h"

#include <torch/torch.h>

#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "imram/train/loss.h"

namespace imram {

torch::optim::Adam make_optimizer(ImramModelImpl& model, double lr) {
  return torch::optim::Adam(model.parameters(), torch::optim::AdamOptions(lr).betas({0.9, 0.999}).eps(1e-8));
}

void set_learning_rate(torch::optim::Adam& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

double apply_gradients(ImramModelImpl& model, torch::optim::Adam& optimizer, double grad_clip) {
  double norm = 0;
  const auto parameters = model.parameters();
  if (grad_clip > 0) {
    norm = torch::nn::utils::clip_grad_norm_(parameters, grad_clip);
  } else {
    double squares = 0;
    for (const auto& p : parameters)
      if (p.grad().defined()) squares += p.grad().pow(2).sum().item<double>();
    norm = std::sqrt(squares);
  }
  optimizer.step();
  return norm;
}

StepResult train_step(ImramModelImpl& model, torch::optim::Adam& optimizer, const Batch& batch,
                      const LossOptions& options) {
  model.train();
  const auto images = model.encode_images(batch.features);
  const auto captions = model.encode_captions(batch.caption_ids, batch.lengths);
  ScoreOptions score_options;
  score_options.gradients = true;
  score_options.image_block = images.regions.size(0);
  score_options.caption_block = captions.words.size(0);
  const auto scores = score_pairs(model, images, captions, score_options).total;
  auto loss = contrastive_loss(scores, options.margin, options.max_violation);
  torch::Tensor global_loss;
  if (options.global_weight > 0) {
    if (!model.global_head) throw Error("a global-embedding loss needs a model with a global head");
    const auto global_scores =
        torch::matmul(model.global_head->embed_images(images), model.global_head->embed_captions(captions).t());
    global_loss = contrastive_loss(global_scores, options.margin, options.max_violation);
    loss = loss + options.global_weight * global_loss;
  }
  optimizer.zero_grad();
  loss.backward();
  StepResult result;
  result.grad_norm = apply_gradients(model, optimizer, options.grad_clip);
  result.loss = loss.item<double>();
  if (global_loss.defined()) result.global_loss = global_loss.item<double>();
  result.scores = scores.detach();
  return result;
}

}  // namespace imram
