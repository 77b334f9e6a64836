#include "imram/train/global_fit.h"

#include <torch/torch.h>

#include <chrono>

#include "imram/engine/encoding.h"
#include "imram/error.h"
#include "imram/model/global_head.h"
#include "imram/train/loss.h"
#include "imram/train/trainer.h"
#include "imram/util/progress.h"

namespace imram {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

GlobalFitSummary fit_global_head(Model& model, const PrecompSplit& train, const GlobalFitOptions& options) {
  if (!model.vocabulary) throw Error("train-global: the model has no vocabulary to read the captions with");
  if (options.epochs < 1) throw Error("train-global: --epochs must be >= 1");
  if (options.batch_size < 2) throw Error("train-global: --batch-size must be >= 2 (the loss needs negatives)");
  if (!(options.lr > 0)) throw Error("train-global: --lr must be > 0");
  auto& net = *model.net;
  torch::manual_seed(std::int64_t(options.seed));
  if (!net.global_head) {
    net.config.global_head = options.dim > 0 ? options.dim : net.config.embed_size;
    net.global_head = net.register_module("global_head", GlobalHead(net.config.embed_size, net.config.global_head));
    net.global_head->to(net.parameters().front().device());
  }
  GlobalFitSummary summary;
  auto start = std::chrono::steady_clock::now();
  torch::Tensor pooled_images, pooled_captions;
  {
    torch::NoGradGuard no_grad;
    net.eval();
    std::vector<torch::Tensor> parts;
    const auto N = train.num_images();
    ProgressBar bar("pooling train images", N, "images", options.show_progress);
    const auto features = encode_image_file(net, train.features(), -1, 128, [&](std::int64_t done, std::int64_t) { bar.update(done); });
    bar.finish();
    pooled_images = pool_regions(features);
    const auto ids = encode_caption_texts(*model.vocabulary, train.captions(), train.captions_path());
    ProgressBar caption_bar("pooling train captions", std::int64_t(ids.size()), "captions", options.show_progress);
    constexpr std::int64_t kBatch = 1024;
    for (std::int64_t j = 0; j < std::int64_t(ids.size()); j += kBatch) {
      const auto n = std::min<std::int64_t>(kBatch, std::int64_t(ids.size()) - j);
      const auto padded = pad_captions(ids, j, n);
      parts.push_back(pool_words(net.encode_captions(padded.ids, padded.lengths)));
      caption_bar.update(j + n);
    }
    caption_bar.finish();
    pooled_captions = torch::cat(parts);
  }
  summary.pooling_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();

  auto& head = *net.global_head;
  head.train();
  torch::optim::Adam optimizer(head.parameters(), torch::optim::AdamOptions(options.lr));
  const auto M = pooled_captions.size(0);
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
      const auto captions = pooled_captions.index_select(0, torch::tensor(caption_ids).to(pooled_captions.device()));
      const auto images = pooled_images.index_select(0, torch::tensor(image_ids).to(pooled_images.device()));
      const auto scores = torch::matmul(head.embed_pooled_images(images), head.embed_pooled_captions(captions).t());
      const auto loss = contrastive_loss(scores, options.margin, /*max_violation=*/true);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      const auto value = loss.item<double>();
      if (!std::isfinite(value)) throw Error("train-global: the loss became " + std::to_string(value) + " at epoch " +
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
