#include "imram/train/global_fit.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <numeric>

#include "imram/engine/encoding.h"
#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "imram/model/global_head.h"
#include "imram/model/image_encoder.h"
#include "imram/runtime/parallel.h"
#include "imram/train/loss.h"
#include "imram/train/trainer.h"
#include "imram/util/progress.h"
#include "imram/util/stopwatch.h"

namespace imram {

namespace {

// Every training item's encoded fragments, computed once: the encoders are frozen, so an epoch
// needs only the head. float16 halves the memory (Flickr30K at d = 1024: about 6 GB) and the
// head's gradients do not notice the rounding.
class FrozenFragments {
 public:
  FrozenFragments(ImramModelImpl& net, const Vocabulary& vocabulary, const PrecompSplit& split, bool show_progress) {
    torch::NoGradGuard no_grad;
    net.eval();
    ProgressBar bar("encoding train images", split.num_images(), "images", show_progress);
    auto images =
        encode_image_file(net, split.features(), -1, 128, [&](std::int64_t done, std::int64_t) { bar.update(done); });
    bar.finish();
    regions_ = images.regions.to(torch::kHalf);
    region_mask_ = images.region_mask;
    const auto ids = encode_caption_texts(vocabulary, split.captions(), split.captions_path());
    ProgressBar caption_bar("encoding train captions", std::int64_t(ids.size()), "captions", show_progress);
    std::vector<torch::Tensor> words;
    offsets_.push_back(0);
    constexpr std::int64_t kBatch = 1024;
    for (std::int64_t j = 0; j < std::int64_t(ids.size()); j += kBatch) {
      const auto n = std::min<std::int64_t>(kBatch, std::int64_t(ids.size()) - j);
      const auto padded = pad_captions(ids, j, n);
      const auto encoded = net.encode_captions(padded.ids, padded.lengths);
      for (std::int64_t i = 0; i < n; ++i) {
        const auto length = padded.lengths[i].item<std::int64_t>();
        words.push_back(encoded.words[i].narrow(0, 0, length).to(torch::kHalf));
        offsets_.push_back(offsets_.back() + length);
      }
      caption_bar.update(j + n);
    }
    caption_bar.finish();
    words_ = torch::cat(words);
  }

  std::int64_t num_captions() const { return std::int64_t(offsets_.size()) - 1; }
  std::int64_t num_images() const { return regions_.size(0); }

  EncodedImages images(const torch::Tensor& ids, const torch::Device& device) const {
    EncodedImages out{regions_.index_select(0, ids).to(device, torch::kFloat), {}};
    if (region_mask_.defined()) out.region_mask = region_mask_.index_select(0, ids).to(device);
    return out;
  }

  EncodedCaptions captions(const std::vector<std::int64_t>& ids, const torch::Device& device) const {
    std::int64_t longest = 0;
    for (const auto j : ids) longest = std::max(longest, offsets_[j + 1] - offsets_[j]);
    auto words = torch::zeros({std::int64_t(ids.size()), longest, words_.size(1)}, torch::kFloat);
    auto lengths = torch::empty({std::int64_t(ids.size())}, torch::kInt64);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto length = offsets_[ids[i] + 1] - offsets_[ids[i]];
      words[std::int64_t(i)].narrow(0, 0, length).copy_(words_.narrow(0, offsets_[ids[i]], length));
      lengths[std::int64_t(i)] = length;
    }
    return {words.to(device), lengths};
  }

 private:
  torch::Tensor regions_, region_mask_, words_;
  std::vector<std::int64_t> offsets_;
};

// For distillation: each training item's likeliest confusions and the frozen model's exact scores
// of them. Candidates come from the cosine of the items' mean fragments (what a plain pooled head
// would confuse), each list holding the item's own partners; scores are IMRAM's S of the pairs,
// divided by the number of step similarities summed so that they live on the cosine's scale.
struct TeacherLists {
  torch::Tensor caption_candidates, caption_scores;  // (M, C): images for each caption
  torch::Tensor image_candidates, image_scores;      // (N, C): captions for each image
};

torch::Tensor nearest(const torch::Tensor& queries, const torch::Tensor& items, std::int64_t count) {
  std::vector<torch::Tensor> parts;
  for (std::int64_t begin = 0; begin < queries.size(0); begin += 1024) {
    const auto block = queries.narrow(0, begin, std::min<std::int64_t>(1024, queries.size(0) - begin));
    parts.push_back(std::get<1>(torch::matmul(block, items.t()).topk(count, 1)));
  }
  return torch::cat(parts);
}

// Puts `partners` into `row` in place of its last entries that are not partners.
void keep_partners(torch::TensorAccessor<std::int64_t, 1> row, const std::vector<std::int64_t>& partners) {
  std::vector<bool> present(partners.size(), false);
  for (std::int64_t c = 0; c < row.size(0); ++c)
    for (std::size_t p = 0; p < partners.size(); ++p) present[p] = present[p] || row[c] == partners[p];
  std::int64_t slot = row.size(0) - 1;
  for (std::size_t p = 0; p < partners.size(); ++p) {
    if (present[p]) continue;
    auto is_partner = [&](std::int64_t id) {
      return std::find(partners.begin(), partners.end(), id) != partners.end();
    };
    while (slot >= 0 && is_partner(row[slot])) --slot;
    if (slot < 0) return;
    row[slot--] = partners[p];
  }
}

TeacherLists teacher_lists(const ImramModelImpl& net, const FrozenFragments& fragments, const PrecompSplit& split,
                           const GlobalFitOptions& options, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const auto N = fragments.num_images(), M = fragments.num_captions();
  const auto C = std::min({options.distill_candidates, N, M});
  std::vector<std::int64_t> all_images(static_cast<std::size_t>(N)), all_captions(static_cast<std::size_t>(M));
  std::iota(all_images.begin(), all_images.end(), 0);
  std::iota(all_captions.begin(), all_captions.end(), 0);
  const auto image_means = l2norm(pool_regions(fragments.images(torch::tensor(all_images), device)), -1);
  torch::Tensor caption_means;
  {
    std::vector<torch::Tensor> parts;
    for (std::int64_t begin = 0; begin < M; begin += 1024) {
      const std::vector<std::int64_t> ids(all_captions.begin() + begin,
                                          all_captions.begin() + std::min(M, begin + 1024));
      parts.push_back(pool_words(fragments.captions(ids, device)));
    }
    caption_means = l2norm(torch::cat(parts), -1);
  }
  TeacherLists lists;
  lists.caption_candidates = nearest(caption_means, image_means, C).to(torch::kCPU).contiguous();
  lists.image_candidates = nearest(image_means, caption_means, C).to(torch::kCPU).contiguous();
  auto caption_rows = lists.caption_candidates.accessor<std::int64_t, 2>();
  for (std::int64_t j = 0; j < M; ++j) keep_partners(caption_rows[j], {split.image_of_caption(j)});
  std::vector<std::vector<std::int64_t>> captions_of(static_cast<std::size_t>(N));
  for (std::int64_t j = 0; j < M; ++j) captions_of[std::size_t(split.image_of_caption(j))].push_back(j);
  auto image_rows = lists.image_candidates.accessor<std::int64_t, 2>();
  for (std::int64_t i = 0; i < N; ++i) keep_partners(image_rows[i], captions_of[std::size_t(i)]);

  const auto& config = net.config;
  const double summed = double(config.iteration_steps) * (config.mode == ImramMode::Full ? 2 : 1);
  lists.caption_scores = torch::empty({M, C});
  lists.image_scores = torch::empty({N, C});
  ProgressBar bar("scoring distillation candidates", N + M, "items", options.show_progress);
  // Each list is a small engine call; the lists run in parallel, a few hundred between updates.
  auto score_lists = [&](std::int64_t count, std::int64_t done_before,
                         const std::function<void(std::int64_t)>& score_one) {
    constexpr std::int64_t kChunk = 512;
    for (std::int64_t begin = 0; begin < count; begin += kChunk) {
      parallel_for_in_callers_mode(begin, std::min(count, begin + kChunk), 1,
                                   [&](std::int64_t first, std::int64_t last) {
                                     for (std::int64_t item = first; item < last; ++item) score_one(item);
                                   });
      bar.update(done_before + std::min(count, begin + kChunk));
    }
  };
  score_lists(M, 0, [&](std::int64_t j) {
    const auto images = fragments.images(lists.caption_candidates[j], device);
    lists.caption_scores[j].copy_(score_pairs(net, images, fragments.captions({j}, device)).total.view({C}) / summed);
  });
  score_lists(N, M, [&](std::int64_t i) {
    const auto row = lists.image_candidates[i];
    const std::vector<std::int64_t> ids(row.data_ptr<std::int64_t>(), row.data_ptr<std::int64_t>() + C);
    const auto scores =
        score_pairs(net, fragments.images(torch::tensor({i}), device), fragments.captions(ids, device)).total;
    lists.image_scores[i].copy_(scores.view({C}) / summed);
  });
  bar.finish();
  return lists;
}

// KL(teacher || student) of each row's softmax over its candidates, averaged over rows.
torch::Tensor listwise_kl(const torch::Tensor& student, const torch::Tensor& teacher, double temperature) {
  const auto target = torch::softmax(teacher / temperature, 1);
  const auto log_student = torch::log_softmax(student / temperature, 1);
  return (target * (torch::log(target.clamp_min(1e-12)) - log_student)).sum(1).mean();
}

}  // namespace

GlobalFitSummary fit_global_head(Model& model, const PrecompSplit& train, const GlobalFitOptions& options) {
  if (!model.vocabulary) throw Error("train-global: the model has no vocabulary to read the captions with");
  if (options.epochs < 1) throw Error("train-global: --epochs must be >= 1");
  if (options.batch_size < 2) throw Error("train-global: --batch-size must be >= 2 (the loss needs negatives)");
  if (!(options.lr > 0)) throw Error("train-global: --lr must be > 0");
  auto& net = *model.net;
  const auto device = net.parameters().front().device();
  torch::manual_seed(std::int64_t(options.seed));
  if (!net.global_head) {
    net.config.global_head = options.dim > 0 ? options.dim : net.config.embed_size;
    net.config.global_pooling = options.pooling;
    net.global_head = net.register_module(
        "global_head", GlobalHead(net.config.embed_size, net.config.global_head, net.config.global_pooling));
    net.global_head->to(device);
  }
  GlobalFitSummary summary;
  auto start = std::chrono::steady_clock::now();
  const FrozenFragments fragments(net, *model.vocabulary, train, options.show_progress);
  summary.encoding_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  TeacherLists teacher;
  if (options.distill > 0) {
    teacher = teacher_lists(net, fragments, train, options, device);
    summary.teacher_seconds = seconds_since(start);
    start = std::chrono::steady_clock::now();
  }

  auto& head = *net.global_head;
  head.train();
  const torch::AutoGradMode gradients(true);  // whatever the caller's mode: the head learns here
  torch::optim::Adam optimizer(head.parameters(), torch::optim::AdamOptions(options.lr));
  const auto M = fragments.num_captions();
  const auto steps = (M + options.batch_size - 1) / options.batch_size;
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    const auto order = epoch_order(M, options.seed, epoch, /*shuffle=*/true);
    ProgressBar bar("train-global epoch " + std::to_string(epoch + 1) + "/" + std::to_string(options.epochs), steps,
                    "steps", options.show_progress);
    double total = 0;
    for (std::int64_t step = 0; step < steps; ++step) {
      const auto begin = step * options.batch_size;
      const auto n = std::min(options.batch_size, M - begin);
      if (n < 2) break;
      std::vector<std::int64_t> caption_ids(order.begin() + begin, order.begin() + begin + n), image_ids;
      for (const auto j : caption_ids) image_ids.push_back(train.image_of_caption(j));
      const auto image_tensor = torch::tensor(image_ids);
      // The distillation candidates are embedded in the same call as the batch: one pooling-weight
      // table per modality and step (the GRU over positions is most of a small batch's time).
      const auto Q = options.distill > 0 ? std::min(options.distill_queries, n) : 0;
      const auto C = options.distill > 0 ? teacher.caption_candidates.size(1) : 0;
      const auto queries = torch::tensor(std::vector<std::int64_t>(caption_ids.begin(), caption_ids.begin() + Q));
      const auto query_images = image_tensor.narrow(0, 0, Q);
      auto all_image_ids = image_tensor;
      auto all_caption_ids = caption_ids;
      if (Q > 0) {
        all_image_ids = torch::cat({image_tensor, teacher.caption_candidates.index_select(0, queries).flatten()});
        const auto candidates = teacher.image_candidates.index_select(0, query_images).contiguous();
        all_caption_ids.insert(all_caption_ids.end(), candidates.data_ptr<std::int64_t>(),
                               candidates.data_ptr<std::int64_t>() + Q * C);
      }
      const auto all_images = head.embed_images(fragments.images(all_image_ids, device));
      const auto all_captions = head.embed_captions(fragments.captions(all_caption_ids, device));
      const auto images = all_images.narrow(0, 0, n), captions = all_captions.narrow(0, 0, n);
      const auto same_picture = (image_tensor.unsqueeze(1) == image_tensor.unsqueeze(0)).to(device);
      // Hardest negatives alone from the start stall a fresh head on a plateau (VSE-infinity's
      // observation, and this one's: 5 epochs of them left the loss where it began); the first
      // epoch sums over every negative.
      auto loss = contrastive_loss(torch::matmul(images, captions.t()), options.margin, /*max_violation=*/epoch > 0,
                                   same_picture);
      if (Q > 0) {
        const auto candidate_images = all_images.narrow(0, n, Q * C).view({Q, C, -1});
        const auto candidate_captions = all_captions.narrow(0, n, Q * C).view({Q, C, -1});
        const auto t2i = (captions.narrow(0, 0, Q).unsqueeze(1) * candidate_images).sum(-1);
        const auto i2t = (images.narrow(0, 0, Q).unsqueeze(1) * candidate_captions).sum(-1);
        loss = loss + options.distill * double(Q) *
                          (listwise_kl(t2i, teacher.caption_scores.index_select(0, queries).to(device),
                                       options.distill_temperature) +
                           listwise_kl(i2t, teacher.image_scores.index_select(0, query_images).to(device),
                                       options.distill_temperature));
      }
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      const auto value = loss.item<double>();
      if (!std::isfinite(value))
        throw Error("train-global: the loss became " + std::to_string(value) + " at epoch " +
                    std::to_string(epoch + 1) + "; lower --lr");
      total += value;
      char status[48];
      std::snprintf(status, sizeof status, "loss %.4f", total / double(step + 1));
      bar.update(step + 1, status);
    }
    bar.finish();
    const double mean = total / double(std::max<std::int64_t>(steps, 1));
    if (epoch == 0) summary.first_epoch_loss = mean;
    summary.last_epoch_loss = mean;
  }
  head.eval();
  net.eval();
  summary.fitting_seconds = seconds_since(start);
  return summary;
}

}  // namespace imram
