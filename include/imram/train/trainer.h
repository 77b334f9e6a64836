#pragma once
// `imram train`: the authors' training procedure (hinge loss with hardest negatives, Adam with a
// step learning-rate schedule, gradient clipping, validation after every epoch keeping the best
// rsum), plus what a long run needs: a background batch loader over memory-mapped features,
// progress, metrics.jsonl, Ctrl-C/SIGTERM saving `last`, and an exact --resume.
//
// RUN_DIR/last and RUN_DIR/best are model directories (model/model_dir.h); `last` also holds
// optimizer.pt and training.json (these options and the position in the data).
#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "imram/model/config.h"

namespace imram {

class Communicator;

struct TrainOptions {
  std::string data_dir;       // precomputed dataset with train (and val_split) splits
  std::string out_dir;        // RUN_DIR
  ModelConfig model;          // ignored with init_from (the model's own options are used)
  std::string vocab_path;     // empty: build from train+dev captions (threshold 4)
  std::string init_from;      // model directory to start from
  double margin = 0.2;        // hinge margin
  bool max_violation = true;  // hardest negative only (else sum over negatives)
  double lr = 2e-4;           // Adam learning rate
  int lr_update = 15;         // multiply lr by 0.1 every lr_update epochs
  int epochs = 30;
  std::int64_t batch_size = 128;
  double grad_clip = 2.0;  // gradient-norm clip over all parameters (<= 0: none)
  // > 0: train a global-embedding head jointly (train/train_step.h, LossOptions::global_weight);
  // a new model gets a head of model.global_head outputs (0: embed_size).
  double global_weight = 0;
  std::int64_t max_steps = 0;      // > 0: stop after this many optimisation steps in total
  bool shuffle = true;             // false: batches are consecutive captions in file order
  std::uint64_t seed = 1;          // weights initialisation and data order
  std::string val_split = "dev";   // "none": no validation, `best` follows `last`
  std::int64_t val_images = 1000;  // validate on the first images of the split, as the authors
  std::int64_t log_every = 10;     // steps between metrics.jsonl training lines
  bool show_progress = true;
  std::size_t memory_budget = std::size_t(1) << 30;  // engine block budget for validation
};

nlohmann::ordered_json to_json(const TrainOptions& options);
TrainOptions train_options_from_json(const nlohmann::json& json, const std::string& source);

struct TrainSummary {
  std::int64_t steps = 0;  // optimisation steps done in total (over resumes)
  int epochs_completed = 0;
  double best_rsum = -1;
  double last_loss = 0;
  bool interrupted = false;  // stopped by SIGINT/SIGTERM; `last` holds the state
};

// Starts a new run in options.out_dir. With a world (train/distributed.h), every rank calls this
// with the same options: batch_size is the whole batch of the world, split over the ranks.
TrainSummary train(const TrainOptions& options, torch::Device device = torch::kCPU, Communicator* world = nullptr);
// Continues RUN_DIR from RUN_DIR/last (in a world of any size: the position is in global batches);
// max_steps/epochs > 0 override the stored ones.
TrainSummary resume_training(const std::string& run_dir, std::int64_t max_steps = 0, int epochs = 0,
                             bool show_progress = true, torch::Device device = torch::kCPU,
                             Communicator* world = nullptr);

// The order in which an epoch visits the captions: a seeded shuffle (identical on every
// platform), or file order.
std::vector<std::int64_t> epoch_order(std::int64_t captions, std::uint64_t seed, int epoch, bool shuffle);

}  // namespace imram
