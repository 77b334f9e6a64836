#pragma once
// `imram bench`: timings of the scoring engine and of a training step on random weights and
// features, each reported next to a baseline measured in the same run (the literal
// transcription of the authors' algorithm, engine/reference_scorer.h).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "imram/model/config.h"

namespace imram {

struct ScoreBenchOptions {
  ModelConfig model;  // mode, steps, embed_size; vocab/img_dim set by the bench
  std::int64_t images = 100;
  std::int64_t captions = 0;  // 0: 5 per image
  std::int64_t regions = 36;
  std::vector<std::int64_t> caption_lengths;  // sampled cyclically; empty: 15.5 on average
  std::size_t memory_budget = std::size_t(1) << 30;
  std::int64_t image_block = 0, caption_block = 0;  // 0: the engine's choice
  std::string engine_path = "auto";                 // ScoreOptions::path: auto, fused_cpu or tensor
  std::int64_t baseline_pairs = 2000;               // pairs the reference algorithm scores (0: no baseline)
  std::uint64_t seed = 1;
  std::string device = "cpu";
};

struct ScoreBenchResult {
  double seconds = 0;
  double pairs_per_s = 0;
  double gflops = 0;  // the engine's analytic per-pair FLOP count / time
  double flops_per_pair = 0;
  double baseline_pairs_per_s = 0;  // reference algorithm, same machine, same run
  double speedup = 0;               // pairs_per_s / baseline_pairs_per_s
  double max_abs_diff_vs_baseline = 0;
  double peak_rss_mb = 0;
  int threads = 0;
  std::string device;
  std::string path;                                          // the engine path that ran
  std::string instruction_set;                               // of the fused gate kernel, when that path ran
  std::vector<std::pair<std::string, std::int64_t>> routes;  // engine calls per route (engine/matching.h)
};

struct TrainBenchOptions {
  ModelConfig model;
  std::int64_t batch_size = 32;
  std::int64_t regions = 36;
  std::int64_t iterations = 3;  // timed steps after one warm-up step
  bool baseline = true;         // also time steps through the reference algorithm
  std::uint64_t seed = 1;
  std::string device = "cpu";
};

struct TrainBenchResult {
  double seconds_per_step = 0;
  double baseline_seconds_per_step = 0;
  double speedup = 0;
  double peak_rss_mb = 0;
  int threads = 0;
  std::string device;
};

ScoreBenchResult bench_score(const ScoreBenchOptions& options);
TrainBenchResult bench_train(const TrainBenchOptions& options);

// Matrix-product FLOPs per (image, caption) pair of the engine for n_words words.
double engine_flops_per_pair(const ModelConfig& config, std::int64_t regions, double words);
// Caption lengths in ids (whitespace tokens + 2) of every line of a caption file.
std::vector<std::int64_t> caption_lengths_of(const std::string& captions_path);
double peak_rss_mb();

std::string to_json(const ScoreBenchResult& result, const ScoreBenchOptions& options);
std::string to_json(const TrainBenchResult& result, const TrainBenchOptions& options);

}  // namespace imram
