#include "imram/eval/evaluator.h"

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "imram/engine/encoding.h"
#include "imram/error.h"
#include "imram/metrics/twin_accuracy.h"
#include "imram/runtime/runtime.h"
#include "imram/util/progress.h"

namespace imram {

std::int64_t evaluated_images(const PrecompSplit& split, const EvalOptions& options) {
  return options.max_images > 0 ? std::min(options.max_images, split.num_images()) : split.num_images();
}

torch::Tensor score_split(ImramModelImpl& model, const Vocabulary& vocabulary, const PrecompSplit& split,
                          const EvalOptions& options) {
  torch::NoGradGuard no_grad;
  model.eval();
  const auto N = evaluated_images(split, options);
  const std::vector<std::string> texts(split.captions().begin(),
                                       split.captions().begin() + N * split.captions_per_image());
  const auto captions = encode_caption_texts(vocabulary, texts, split.captions_path());
  const auto images = encode_image_file(model, split.features(), N);
  const auto encoded = encode_caption_ids(model, captions);

  ProgressBar bar("scoring " + split.name(), N * std::int64_t(texts.size()), "pairs", options.show_progress);
  ScoreOptions score_options;
  score_options.memory_budget = options.memory_budget;
  score_options.progress = [&](std::int64_t done, std::int64_t) { bar.update(done); };
  const auto scores = score_pairs(model, images, encoded, score_options).total.to(torch::kCPU);
  bar.finish();
  return scores;
}

EvalResult evaluate(ImramModelImpl& model, const Vocabulary& vocabulary, const PrecompSplit& split,
                    const EvalOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  auto result = evaluate_scores(score_split(model, vocabulary, split, options), split, options);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

EvalResult evaluate_scores(torch::Tensor sims, const PrecompSplit& split, const EvalOptions& options) {
  EvalResult result;
  result.sims = std::move(sims);
  const auto sims64 = result.sims.to(torch::kFloat64).contiguous();
  const double* data = sims64.data_ptr<double>();
  const auto N = result.sims.size(0), M = result.sims.size(1);
  result.metrics = options.fold5 ? compute_metrics_fold5(data, N, M, split.captions_per_image(), thread_count())
                                 : compute_metrics(data, N, M, split.captions_per_image(), thread_count());
  if (!options.dataset_dir.empty() && N == split.num_images()) {
    const auto twins = read_twins(options.dataset_dir, split.name(), N);
    if (!twins.empty()) result.twin_accuracy = twin_accuracy(data, N, M, twins, split.captions_per_image());
  }
  return result;
}

EvalResult evaluate_global(ImramModelImpl& model, const Vocabulary& vocabulary, const PrecompSplit& split,
                           const EvalOptions& options) {
  if (!model.global_head)
    throw Error("the model has no global head (train it with --global-weight or imram train-global)");
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  model.eval();
  const auto N = evaluated_images(split, options);
  const std::vector<std::string> texts(split.captions().begin(),
                                       split.captions().begin() + N * split.captions_per_image());
  const auto images = model.global_head->embed_images(encode_image_file(model, split.features(), N));
  const auto captions = model.global_head->embed_captions(
      encode_caption_ids(model, encode_caption_texts(vocabulary, texts, split.captions_path())));
  EvalResult result;
  result.sims = torch::matmul(images, captions.t()).to(torch::kCPU, torch::kFloat32);
  const auto sims64 = result.sims.to(torch::kFloat64).contiguous();
  result.metrics = options.fold5 ? compute_metrics_fold5(sims64.data_ptr<double>(), N, sims64.size(1),
                                                         split.captions_per_image(), thread_count())
                                 : compute_metrics(sims64.data_ptr<double>(), N, sims64.size(1),
                                                   split.captions_per_image(), thread_count());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

std::string eval_json(const EvalResult& result) {
  auto json = nlohmann::ordered_json::parse(metrics_json(result.metrics));
  if (result.twin_accuracy) json["twin_accuracy"] = *result.twin_accuracy;
  return json.dump();
}

}  // namespace imram
