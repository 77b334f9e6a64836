#include "imram/train/distributed_step.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <numeric>

#include "imram/engine/scorer.h"

namespace imram {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::int64_t first_of_rank(const std::vector<std::int64_t>& counts, int rank) {
  return std::accumulate(counts.begin(), counts.begin() + rank, std::int64_t(0));
}

// The whole batch's encoded regions from every rank's share. Every rank's loss depends on all
// of them: the backward sums the ranks' gradients and hands each rank the rows of its own
// images, which then flow into its own image encoder.
struct GatherRows : torch::autograd::Function<GatherRows> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& local, Communicator* world,
                               const std::vector<std::int64_t>& counts) {
    // saved_data holds IValues only: the communicator, which outlives the step, travels as an integer.
    ctx->saved_data["world"] = static_cast<std::int64_t>(reinterpret_cast<std::intptr_t>(world));
    ctx->saved_data["counts"] = counts;
    return world->all_gather_rows(local.contiguous(), counts);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* world = reinterpret_cast<Communicator*>(static_cast<std::intptr_t>(ctx->saved_data["world"].toInt()));
    const auto counts = ctx->saved_data["counts"].toIntVector();
    auto grad = grads[0].contiguous().clone();
    world->all_reduce(grad, Reduction::kSum);
    const auto rank = world->rank();
    return {grad.narrow(0, first_of_rank(counts, rank), counts[std::size_t(rank)]), torch::Tensor(), torch::Tensor()};
  }
};

// This rank's share of the batch's hinge loss (train/loss.h) from its block of columns
// scores (B, n), captions first..first+n: summed over the ranks it is the whole loss, in value
// and in gradient.
torch::Tensor loss_of_columns(const torch::Tensor& scores, std::int64_t first, const LossOptions& options,
                              Communicator& world) {
  const auto B = scores.size(0), n = scores.size(1);
  const auto index_options = torch::TensorOptions(torch::kInt64).device(scores.device());
  const auto rows = torch::arange(first, first + n, index_options), columns = torch::arange(n, index_options);
  auto is_positive = torch::zeros({B, n}, scores.options().dtype(torch::kBool));
  is_positive.index_put_({rows, columns}, true);
  const auto positives = scores.index({rows, columns});  // S_jj of this rank's captions

  // A caption against every other image: its whole column lies on this rank.
  auto cost_images = (options.margin + scores - positives.view({1, n})).clamp_min(0).masked_fill(is_positive, 0);
  const auto columns_part = options.max_violation ? std::get<0>(cost_images.max(0)).sum() : cost_images.sum();

  // An image against every other caption: its row spans the ranks. Its positive lives on the
  // rank that owns the image; each rank offers its best negative of the row.
  constexpr float kNone = std::numeric_limits<float>::lowest();
  auto shared = torch::full({2, B}, kNone, scores.options().requires_grad(false));
  shared[1].index_put_({rows}, positives.detach());
  if (!options.max_violation) {
    world.all_reduce(shared, Reduction::kMax);
    const auto positives_of_rows = shared[1].view({B, 1});
    const auto cost = (options.margin + scores - positives_of_rows).clamp_min(0).masked_fill(is_positive, 0);
    // The rows' positives get their gradient (-1 per violating negative, over all ranks) here.
    auto violations = (cost.detach() > 0).sum(1).to(scores.scalar_type()).contiguous();
    world.all_reduce(violations, Reduction::kSum);
    const auto positives_gradient = -(violations.index({rows}) * (positives - positives.detach())).sum();
    return columns_part + cost.sum() + positives_gradient;
  }
  const auto candidates = std::get<0>(scores.masked_fill(is_positive, kNone).max(1));  // (B)
  shared[0].copy_(candidates.detach());
  world.all_reduce(shared, Reduction::kMax);
  const auto hardest = shared[0], positives_of_rows = shared[1];
  // One process takes the first of equal maxima, i.e. the lowest rank's.
  auto holder = torch::where(candidates.detach() == hardest, torch::full_like(hardest, world.rank()),
                             torch::full_like(hardest, world.size()))
                    .contiguous();
  world.all_reduce(holder, Reduction::kMin);
  const auto violated = (options.margin + hardest - positives_of_rows) > 0;
  // Each row's value is counted once, by the owner of its positive; the hardest negative's
  // rank adds only its gradient (a zero-valued term).
  const auto rows_value = (options.margin + hardest.index({rows}) - positives).clamp_min(0).sum();
  const auto held = violated.logical_and(holder == world.rank());
  const auto negatives_gradient =
      torch::where(held, candidates - candidates.detach(), torch::zeros_like(candidates)).sum();
  return columns_part + rows_value + negatives_gradient;
}

// A batch with fewer pairs than ranks (an epoch's last) leaves some rank without a caption: every
// rank gathers the whole batch and takes the single-process step, the same on all of them.
StepResult whole_batch_step(ImramModelImpl& model, torch::optim::Adam& optimizer, const Batch& local,
                            const LossOptions& options, Communicator& world, const std::vector<std::int64_t>& counts) {
  const auto device = world.device();
  auto length = torch::full({1}, local.caption_ids.dim() == 2 ? local.caption_ids.size(1) : 0,
                            torch::TensorOptions(torch::kInt64).device(device));
  world.all_reduce(length, Reduction::kMax);
  auto ids = torch::zeros({local.caption_ids.size(0), length.item<std::int64_t>()},
                          local.caption_ids.options().dtype(torch::kInt64).device(device));
  if (local.caption_ids.numel() > 0) ids.narrow(1, 0, local.caption_ids.size(1)).copy_(local.caption_ids);
  const Batch whole{world.all_gather_rows(local.features.to(device, torch::kFloat32).contiguous(), counts),
                    world.all_gather_rows(ids, counts),
                    world.all_gather_rows(local.lengths.to(device, torch::kInt64).contiguous(), counts)};
  return train_step(model, optimizer, whole, options);
}

}  // namespace

StepResult distributed_train_step(ImramModelImpl& model, torch::optim::Adam& optimizer, const Batch& local,
                                  const LossOptions& options, Communicator& world) {
  const auto counts = world.all_gather_count(local.features.size(0));
  if (*std::min_element(counts.begin(), counts.end()) == 0)
    return whole_batch_step(model, optimizer, local, options, world, counts);
  const auto total = std::accumulate(counts.begin(), counts.end(), std::int64_t(0));
  model.train();
  const auto images = model.encode_images(local.features);
  const auto captions = model.encode_captions(local.caption_ids, local.lengths);
  EncodedImages batch_images{GatherRows::apply(images.regions, &world, counts), torch::Tensor()};
  if (images.region_mask.defined())
    batch_images.region_mask =
        world.all_gather_rows(images.region_mask.to(torch::kUInt8).contiguous(), counts).to(torch::kBool);
  ScoreOptions score_options;
  score_options.gradients = true;
  score_options.image_block = total;
  score_options.caption_block = captions.words.size(0);
  const auto scores = score_pairs(model, batch_images, captions, score_options).total;
  const auto loss = loss_of_columns(scores, first_of_rank(counts, world.rank()), options, world);
  optimizer.zero_grad();
  loss.backward();

  // Each rank holds its part of every gradient: one all-reduce sums them, and the loss with them.
  std::vector<torch::Tensor> grads;
  for (const auto& p : model.parameters())
    if (p.grad().defined()) grads.push_back(p.grad());
  std::vector<torch::Tensor> flat_parts;
  for (const auto& g : grads) flat_parts.push_back(g.reshape(-1));
  flat_parts.push_back(loss.detach().reshape(1).to(scores.scalar_type()));
  auto flat = torch::cat(flat_parts);
  world.all_reduce(flat, Reduction::kSum);
  std::int64_t offset = 0;
  for (auto& g : grads) {
    g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
    offset += g.numel();
  }
  StepResult result;
  result.grad_norm = apply_gradients(model, optimizer, options.grad_clip);
  result.loss = flat[offset].item<double>();
  result.scores = scores.detach();
  return result;
}

void broadcast_parameters(ImramModelImpl& model, Communicator& world) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : model.parameters()) tensors.push_back(p.data());
  for (const auto& b : model.buffers()) tensors.push_back(b.data());
  world.broadcast(tensors, 0);
}

}  // namespace imram
