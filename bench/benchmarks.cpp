#include "bench/benchmarks.h"

#include <sys/resource.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "imram/data/captions.h"
#include "imram/engine/fused_gate.h"
#include "imram/engine/reference_scorer.h"
#include "imram/engine/scorer.h"
#include "imram/runtime/runtime.h"
#include "imram/train/loss.h"
#include "imram/train/train_step.h"

namespace imram {

namespace {

constexpr std::int64_t kBenchVocabulary = 1000;
constexpr std::int64_t kBenchImageDim = 2048;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

ModelConfig bench_config(ModelConfig config) {
  config.vocab_size = kBenchVocabulary;
  config.img_dim = kBenchImageDim;
  return config;
}

std::vector<std::int64_t> lengths_for(const std::vector<std::int64_t>& sample, std::int64_t count,
                                      std::mt19937_64& rng) {
  std::vector<std::int64_t> lengths(static_cast<std::size_t>(count));
  for (std::int64_t j = 0; j < count; ++j) {
    if (sample.empty()) {
      lengths[std::size_t(j)] = 12 + std::int64_t(rng() % 8);  // 12..19, mean 15.5 like Flickr30K
    } else {
      lengths[std::size_t(j)] = sample[std::size_t(rng() % sample.size())];
    }
  }
  return lengths;
}

// Makes a timing cover the device's queued work, not just its launch.
void wait_for(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

EncodedCaptions random_captions(ImramModelImpl& model, const std::vector<std::int64_t>& lengths) {
  const auto M = std::int64_t(lengths.size());
  std::int64_t longest = 1;
  for (auto l : lengths) longest = std::max(longest, l);
  auto ids = torch::randint(4, kBenchVocabulary, {M, longest}, torch::kInt64);
  const auto lengths_tensor = torch::tensor(lengths, torch::kInt64);
  ids.masked_fill_(torch::arange(longest).unsqueeze(0) >= lengths_tensor.unsqueeze(1), 0);
  return model.encode_captions(ids, lengths_tensor);
}

nlohmann::ordered_json route_calls(const std::vector<std::pair<std::string, std::int64_t>>& routes) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& [route, calls] : routes) out[route] = calls;
  return out;
}

}  // namespace

double peak_rss_mb() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;
}

std::vector<std::int64_t> caption_lengths_of(const std::string& captions_path) {
  std::vector<std::int64_t> lengths;
  for (const auto& caption : read_captions(captions_path)) {
    std::istringstream words(caption);
    std::string word;
    std::int64_t count = 0;
    while (words >> word) ++count;
    lengths.push_back(count + 2);
  }
  return lengths;
}

double engine_flops_per_pair(const ModelConfig& config, std::int64_t regions, double words) {
  const double d = double(config.embed_size), R = double(regions), L = words;
  const int K = config.iteration_steps;
  auto direction = [&](double nq, double nc) {
    double flops = 2 * nq * nc * d;  // step-1 raw scores
    for (int k = 1; k <= K; ++k) {
      flops += 2 * nq * nc * nc + 4 * nq * nc;          // Gram norms and dot products
      if (k > 1) flops += 2 * nq * nc * d;              // raw scores of the refined query
      if (k < K) flops += 2 * nq * nc * 2 * d;          // mixing the cached context half
      if (k > 1 && k < K) flops += 2 * nq * d * 2 * d;  // per-pair query half
    }
    return flops;
  };
  double flops = 0;
  if (config.uses_text_direction()) flops += direction(L, R);
  if (config.uses_image_direction()) flops += direction(R, L);
  return flops;
}

ScoreBenchResult bench_score(const ScoreBenchOptions& options) {
  torch::manual_seed(options.seed);
  std::mt19937_64 rng(options.seed);
  torch::NoGradGuard no_grad;
  const auto device = parse_device(options.device);
  ImramModel model(bench_config(options.model));
  model->to(device);
  model->eval();
  const auto N = options.images;
  const auto M = options.captions > 0 ? options.captions : 5 * N;
  const auto lengths = lengths_for(options.caption_lengths, M, rng);
  const auto images = model->encode_images(torch::rand({N, options.regions, kBenchImageDim}));
  const auto captions = random_captions(*model, lengths);

  ScoreBenchResult result;
  result.threads = thread_count();
  result.device = device.str();
  ScoreOptions score_options;
  score_options.memory_budget = options.memory_budget;
  score_options.image_block = options.image_block;
  score_options.caption_block = options.caption_block;
  score_options.path = parse_engine_path(options.engine_path);
  wait_for(device);
  const auto routes_before = engine_route_counts();
  const double start = now_seconds();
  const auto scored = score_pairs(*model, images, captions, score_options);
  const auto& scores = scored.total;
  result.path = to_string(scored.path);
  result.instruction_set = scored.path == EnginePath::FusedCpu ? fused_gate_instruction_set() : "";
  wait_for(device);
  result.seconds = now_seconds() - start;
  const auto routes_after = engine_route_counts();
  for (std::size_t r = 0; r < routes_after.size(); ++r)
    if (routes_after[r].second > routes_before[r].second)
      result.routes.emplace_back(to_string(routes_after[r].first), routes_after[r].second - routes_before[r].second);
  result.pairs_per_s = double(N * M) / result.seconds;
  double mean_words = 0;
  for (auto l : lengths) mean_words += double(l) / double(M);
  result.flops_per_pair = engine_flops_per_pair(model->config, options.regions, mean_words);
  result.gflops = result.flops_per_pair * result.pairs_per_s / 1e9;

  if (options.baseline_pairs > 0) {
    // The authors' loop scores one caption against all images at once: time whole captions.
    const auto baseline_images = std::min<std::int64_t>(N, 100);
    const auto baseline_captions =
        std::max<std::int64_t>(1, std::min<std::int64_t>(M, options.baseline_pairs / baseline_images));
    const EncodedImages some_images{images.regions.narrow(0, 0, baseline_images), torch::Tensor()};
    const EncodedCaptions some_captions{captions.words.narrow(0, 0, baseline_captions),
                                        captions.lengths.narrow(0, 0, baseline_captions)};
    const double baseline_start = now_seconds();
    const auto reference = reference_score_pairs(*model, some_images, some_captions).total;
    wait_for(device);
    const double baseline_seconds = now_seconds() - baseline_start;
    result.baseline_pairs_per_s = double(baseline_images * baseline_captions) / baseline_seconds;
    result.speedup = result.pairs_per_s / result.baseline_pairs_per_s;
    result.max_abs_diff_vs_baseline =
        (reference - scores.narrow(0, 0, baseline_images).narrow(1, 0, baseline_captions)).abs().max().item<double>();
  }
  result.peak_rss_mb = peak_rss_mb();
  return result;
}

TrainBenchResult bench_train(const TrainBenchOptions& options) {
  torch::manual_seed(options.seed);
  std::mt19937_64 rng(options.seed);
  const auto B = options.batch_size;
  const auto device = parse_device(options.device);
  ImramModel model(bench_config(options.model));
  model->to(device);
  const auto lengths = lengths_for({}, B, rng);
  std::int64_t longest = 1;
  for (auto l : lengths) longest = std::max(longest, l);
  Batch batch{torch::rand({B, options.regions, kBenchImageDim}),
              torch::randint(4, kBenchVocabulary, {B, longest}, torch::kInt64), torch::tensor(lengths, torch::kInt64)};
  auto optimizer = make_optimizer(*model, 2e-4);
  const LossOptions loss{0.2, true, 2.0};
  auto time_steps = [&](const std::function<void()>& step) {
    step();  // warm-up: allocations, thread pool
    const double start = now_seconds();
    for (std::int64_t i = 0; i < options.iterations; ++i) step();
    wait_for(device);
    return (now_seconds() - start) / double(options.iterations);
  };
  TrainBenchResult result;
  result.threads = thread_count();
  result.device = device.str();
  result.seconds_per_step = time_steps([&] { train_step(*model, optimizer, batch, loss); });
  if (options.baseline) {
    result.baseline_seconds_per_step = time_steps([&] {
      model->train();
      const auto images = model->encode_images(batch.features);
      const auto captions = model->encode_captions(batch.caption_ids, batch.lengths);
      const auto scores = reference_score_pairs(*model, images, captions).total;
      const auto value = contrastive_loss(scores, loss.margin, loss.max_violation);
      optimizer.zero_grad();
      value.backward();
      torch::nn::utils::clip_grad_norm_(model->parameters(), loss.grad_clip);
      optimizer.step();
    });
    result.speedup = result.baseline_seconds_per_step / result.seconds_per_step;
  }
  result.peak_rss_mb = peak_rss_mb();
  return result;
}

std::string to_json(const ScoreBenchResult& r, const ScoreBenchOptions& o) {
  return nlohmann::ordered_json{{"bench", "score"},
                                {"mode", to_string(o.model.mode)},
                                {"steps", o.model.iteration_steps},
                                {"embed", o.model.embed_size},
                                {"regions", o.regions},
                                {"images", o.images},
                                {"captions", o.captions > 0 ? o.captions : 5 * o.images},
                                {"threads", r.threads},
                                {"device", r.device},
                                {"engine_path", r.path},
                                {"routes", route_calls(r.routes)},
                                {"simd", r.instruction_set},
                                {"seconds", r.seconds},
                                {"pairs_per_s", r.pairs_per_s},
                                {"gflops", r.gflops},
                                {"flops_per_pair", r.flops_per_pair},
                                {"baseline_pairs_per_s", r.baseline_pairs_per_s},
                                {"speedup_vs_baseline", r.speedup},
                                {"max_abs_diff_vs_baseline", r.max_abs_diff_vs_baseline},
                                {"peak_rss_mb", r.peak_rss_mb}}
      .dump();
}

std::string to_json(const TrainBenchResult& r, const TrainBenchOptions& o) {
  return nlohmann::ordered_json{{"bench", "train"},
                                {"mode", to_string(o.model.mode)},
                                {"steps", o.model.iteration_steps},
                                {"embed", o.model.embed_size},
                                {"regions", o.regions},
                                {"batch_size", o.batch_size},
                                {"threads", r.threads},
                                {"device", r.device},
                                {"seconds_per_step", r.seconds_per_step},
                                {"baseline_seconds_per_step", r.baseline_seconds_per_step},
                                {"speedup_vs_baseline", r.speedup},
                                {"peak_rss_mb", r.peak_rss_mb}}
      .dump();
}

}  // namespace imram
