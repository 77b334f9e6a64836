#include "imram/train/trainer.h"

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "imram/data/captions.h"
#include "imram/error.h"
#include "imram/eval/evaluator.h"
#include "imram/model/model_dir.h"
#include "imram/train/batch_loader.h"
#include "imram/train/distributed_step.h"
#include "imram/train/distributed_validation.h"
#include "imram/train/train_step.h"
#include "imram/util/atomic_file.h"
#include "imram/util/json_file.h"
#include "imram/util/log.h"
#include "imram/util/progress.h"
#include "imram/util/splitmix.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

std::atomic<int> g_stop_signal{0};

extern "C" void request_stop(int signal) {
  g_stop_signal = signal;
  // A second Ctrl-C kills the process the usual way.
  std::signal(signal, SIG_DFL);
}

// Installs the handlers for the duration of a run and restores the previous ones.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    previous_int_ = std::signal(SIGINT, request_stop);
    previous_term_ = std::signal(SIGTERM, request_stop);
  }
  ~StopSignals() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

struct Position {
  int epoch = 0;                    // current epoch (0-based)
  std::int64_t batch_in_epoch = 0;  // batches of it already done
  std::int64_t global_step = 0;
  double best_rsum = -1;
  int epochs_completed = 0;
};

nlohmann::ordered_json position_json(const Position& p) {
  return {{"epoch", p.epoch},
          {"batch_in_epoch", p.batch_in_epoch},
          {"global_step", p.global_step},
          {"best_rsum", p.best_rsum},
          {"epochs_completed", p.epochs_completed}};
}

class Run {
 public:
  Run(TrainOptions options, torch::Device device, Communicator* world)
      : options_(std::move(options)), device_(device), world_(world) {}

  TrainSummary start() {
    if (fs::exists(options_.out_dir + "/last"))
      throw Error(options_.out_dir + ": already holds a run; continue it with --resume " + options_.out_dir +
                  " or choose another --out");
    // Stored in training.json: a relative path would break --resume from another directory.
    for (auto* path : {&options_.data_dir, &options_.vocab_path, &options_.init_from})
      if (!path->empty()) *path = fs::absolute(*path).lexically_normal().string();
    open_data();
    torch::manual_seed(options_.seed);
    if (!options_.init_from.empty()) {
      model_ = load_model(options_.init_from, device_);
      if (!options_.vocab_path.empty()) model_.vocabulary = Vocabulary::from_file(options_.vocab_path);
      if (!model_.vocabulary) throw Error(options_.init_from + ": model has no vocab.json; pass --vocab");
      if (model_.vocabulary->size() != model_.config().vocab_size)
        throw Error(options_.init_from + ": vocabulary size " + std::to_string(model_.vocabulary->size()) +
                    " differs from the model's " + std::to_string(model_.config().vocab_size));
      if (model_.config().img_dim != train_->feature_dim())
        throw Error(train_->features_path() + ": regions have " + std::to_string(train_->feature_dim()) +
                    " features but " + options_.init_from + " expects " + std::to_string(model_.config().img_dim));
      options_.model = model_.config();
      if (options_.global_weight > 0 && !model_.net->global_head)
        throw Error(options_.init_from +
                    ": model has no global head for --global-weight; add one with "
                    "imram train-global first");
    } else {
      if (options_.global_weight > 0 && options_.model.global_head == 0)
        options_.model.global_head = options_.model.embed_size;
      model_.vocabulary = options_.vocab_path.empty() ? build_vocabulary() : Vocabulary::from_file(options_.vocab_path);
      options_.model.vocab_size = model_.vocabulary->size();
      options_.model.img_dim = train_->feature_dim();
      model_.net = ImramModel(options_.model);
      model_.net->to(device_);
    }
    if (writes_files()) require_writable_directory(options_.out_dir);
    optimizer_ = std::make_unique<torch::optim::Adam>(make_optimizer(*model_.net, options_.lr));
    return loop();
  }

  TrainSummary resume(const std::string& run_dir, std::int64_t max_steps, int epochs, bool progress) {
    const std::string last = run_dir + "/last";
    if (!fs::exists(last + "/training.json")) throw Error(run_dir + ": nothing to resume (no last/training.json)");
    const auto state = read_json_file(last + "/training.json", "training state");
    options_ = train_options_from_json(state.at("options"), last + "/training.json");
    options_.out_dir = run_dir;
    if (max_steps > 0) options_.max_steps = max_steps;  // checked against the position below
    if (epochs > 0) options_.epochs = epochs;
    options_.show_progress = progress;
    const auto& p = state.at("position");
    position_.epoch = p.at("epoch");
    position_.batch_in_epoch = p.at("batch_in_epoch");
    position_.global_step = p.at("global_step");
    position_.best_rsum = p.at("best_rsum");
    position_.epochs_completed = p.at("epochs_completed");
    if (max_steps > 0 && position_.global_step >= max_steps)
      throw Error(run_dir + ": already at step " + std::to_string(position_.global_step) + "; --max-steps " +
                  std::to_string(max_steps) + " would train nothing");
    // A run that stopped at its --max-steps continues to its --epochs unless given a new limit.
    if (max_steps <= 0 && options_.max_steps > 0 && position_.global_step >= options_.max_steps) options_.max_steps = 0;
    if (writes_files()) require_writable_directory(run_dir);
    open_data();
    model_ = load_model(last, device_);
    options_.model = model_.config();
    optimizer_ = std::make_unique<torch::optim::Adam>(make_optimizer(*model_.net, options_.lr));
    torch::load(*optimizer_, last + "/optimizer.pt");
    drop_log_lines_after(position_.global_step);
    return loop();
  }

 private:
  void open_data() {
    train_ = std::make_unique<PrecompSplit>(PrecompSplit::open(options_.data_dir, "train"));
    if (options_.val_split != "none")
      val_ = std::make_unique<PrecompSplit>(PrecompSplit::open(options_.data_dir, options_.val_split));
  }

  Vocabulary build_vocabulary() const {
    auto captions = train_->captions();
    const auto dev_captions = fs::path(options_.data_dir) / "dev_caps.txt";
    if (fs::exists(dev_captions)) {
      const auto dev = read_captions(dev_captions.string());
      captions.insert(captions.end(), dev.begin(), dev.end());
    }
    return Vocabulary::build(captions);
  }

  // In a world, rank 0 alone writes the run directory and shows progress.
  bool writes_files() const { return !world_ || world_->rank() == 0; }

  void log(const nlohmann::ordered_json& line) {
    if (!writes_files()) return;
    const std::string path = options_.out_dir + "/metrics.jsonl";
    std::error_code ec;
    const auto size_before = fs::exists(path) ? fs::file_size(path, ec) : 0;
    std::ofstream out(path, std::ios::app);
    out << line.dump() << "\n";
    out.close();
    if (!out) {
      fs::resize_file(path, size_before, ec);  // no half line for readers of the log to trip on
      throw Error(path + ": cannot append the log line (disk full?)");
    }
  }

  // A run killed after its last save logged steps that the resumed run does again: their lines
  // go (and a line torn by the kill), so the log reads as one run.
  void drop_log_lines_after(std::int64_t step) {
    const std::string path = options_.out_dir + "/metrics.jsonl";
    std::error_code ec;
    if (!writes_files() || !fs::is_regular_file(fs::symlink_status(path, ec))) return;  // a device, a link: as it is
    std::ifstream in(path, std::ios::binary);
    std::string kept, line;
    bool dropped = false;
    while (std::getline(in, line)) {
      const auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      const bool keep = parsed.is_object() && parsed.contains("step") && parsed["step"].is_number_integer() &&
                        parsed["step"].get<std::int64_t>() <= step && !in.eof();
      if (keep) kept += line + "\n";
      dropped = dropped || !keep;
    }
    if (!dropped) return;
    in.close();
    write_file_atomically(path, [&](std::ostream& out) { out << kept; });
  }

  void save_last() {
    if (!writes_files()) return;
    save_model(options_.out_dir + "/last", model_, [&](const std::string& tmp) {
      // Serialised in memory: LibTorch's file writer throws from a destructor on a full disk,
      // which aborts the process; a checked write of the bytes fails cleanly instead.
      std::ostringstream optimizer_bytes;
      torch::save(*optimizer_, optimizer_bytes);
      write_file_atomically(tmp + "/optimizer.pt", [&](std::ostream& out) { out << optimizer_bytes.str(); });
      nlohmann::ordered_json state{{"options", to_json(options_)}, {"position", position_json(position_)}};
      write_file_atomically(tmp + "/training.json", [&](std::ostream& out) { out << state.dump(2) << "\n"; });
    });
  }

  // Validation after an epoch (or at --max-steps); keeps `best`.
  void validate() {
    nlohmann::ordered_json line{{"type", "val"}, {"epoch", position_.epoch}, {"step", position_.global_step}};
    double rsum = 0;
    if (val_) {
      EvalOptions eval_options;
      eval_options.show_progress = options_.show_progress;
      eval_options.max_images = options_.val_images;
      eval_options.memory_budget = options_.memory_budget;
      eval_options.dataset_dir = options_.data_dir;
      const auto result = world_ ? evaluate_in_world(*model_.net, *model_.vocabulary, *val_, eval_options, *world_)
                                 : evaluate(*model_.net, *model_.vocabulary, *val_, eval_options);
      model_.net->train();
      rsum = result.metrics.rsum;
      const auto measured = nlohmann::ordered_json::parse(eval_json(result));
      for (const auto& [key, value] : measured.items()) line[key] = value;
      if (options_.show_progress)
        log_note("validation (" + val_->name() + "): rsum " + c10::str(rsum) + "  R@1 i2t " +
                 c10::str(result.metrics.i2t.r1) + " t2i " + c10::str(result.metrics.t2i.r1));
    }
    log(line);
    if (!val_ || rsum > position_.best_rsum) {
      position_.best_rsum = val_ ? rsum : position_.best_rsum;
      if (writes_files()) save_model(options_.out_dir + "/best", model_);
    }
  }

  TrainSummary loop() {
    StopSignals signals;
    if (world_) {
      // The distributed step builds its loss from column slices of the score matrix; the
      // global-embedding term has no such split yet.
      if (options_.global_weight > 0)
        throw Error(
            "--global-weight is not supported with several ranks yet: train without it, then fit the "
            "head with imram train-global");
      if (world_->rank() != 0) options_.show_progress = false;
      broadcast_parameters(*model_.net, *world_);
    }
    const auto captions = encode_caption_texts(*model_.vocabulary, train_->captions(), train_->captions_path());
    // The first progress line comes only after the first steps: say what is being done meanwhile.
    if (options_.show_progress)
      log_note(c10::str("training ", to_string(options_.model.mode), "-IMRAM (K=", options_.model.iteration_steps,
                        ", d=", options_.model.embed_size, ") on ", train_->num_images(), " images and ",
                        captions.size(), " captions of ", train_->features_path(), " (", train_->num_regions(),
                        " regions x ", train_->feature_dim(), " features), ", options_.epochs, " epochs of batch ",
                        options_.batch_size, world_ ? ", " + std::to_string(world_->size()) + " ranks" : ""));
    const auto pairs_per_step = double(options_.batch_size) * double(options_.batch_size);
    LossOptions loss_options{options_.margin, options_.max_violation, options_.grad_clip, options_.global_weight};
    TrainSummary summary;
    bool stop_for_steps = false;
    while (position_.epoch < options_.epochs && !stop_for_steps) {
      const double lr = options_.lr * std::pow(0.1, position_.epoch / options_.lr_update);
      set_learning_rate(*optimizer_, lr);
      BatchLoader loader(
          *train_, captions, epoch_order(train_->num_captions(), options_.seed, position_.epoch, options_.shuffle),
          options_.batch_size, position_.batch_in_epoch, 3, world_ ? world_->rank() : 0, world_ ? world_->size() : 1);
      ProgressBar bar("epoch " + std::to_string(position_.epoch + 1) + "/" + std::to_string(options_.epochs),
                      loader.batches(), "steps", options_.show_progress);
      double window_loss = 0;
      std::int64_t window_steps = 0;
      auto window_start = std::chrono::steady_clock::now();
      auto window_bytes = world_ ? world_->bytes_exchanged() : 0;
      while (auto batch = loader.next()) {
        const auto result = world_ ? distributed_train_step(*model_.net, *optimizer_, *batch, loss_options, *world_)
                                   : train_step(*model_.net, *optimizer_, *batch, loss_options);
        if (!std::isfinite(result.loss) || !std::isfinite(result.grad_norm))
          throw Error("training diverged at step " + std::to_string(position_.global_step + 1) + " (epoch " +
                      std::to_string(position_.epoch + 1) + "): loss " + std::to_string(result.loss) +
                      ", gradient norm " + std::to_string(result.grad_norm) + "; stopped without saving: " +
                      options_.out_dir + " holds only states from before this step (lower --lr or set --grad-clip)");
        ++position_.batch_in_epoch;
        ++position_.global_step;
        summary.last_loss = result.loss;
        window_loss += result.loss;
        ++window_steps;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
        char status[96];
        std::snprintf(status, sizeof status, "loss %.4f  %.0f pairs/s", result.loss,
                      double(window_steps) * pairs_per_step / std::max(seconds, 1e-9));
        bar.update(position_.batch_in_epoch, status);
        if (position_.global_step % options_.log_every == 0) {
          nlohmann::ordered_json line{{"type", "train"},
                                      {"epoch", position_.epoch},
                                      {"step", position_.global_step},
                                      {"loss", window_loss / double(window_steps)},
                                      {"lr", lr},
                                      {"grad_norm", result.grad_norm},
                                      {"global_loss", result.global_loss},
                                      {"pairs_per_s", double(window_steps) * pairs_per_step / std::max(seconds, 1e-9)}};
          if (world_) {
            line["exchanged_bytes_per_step"] = double(world_->bytes_exchanged() - window_bytes) / double(window_steps);
            window_bytes = world_->bytes_exchanged();
          }
          log(line);
          window_loss = 0;
          window_steps = 0;
          window_start = std::chrono::steady_clock::now();
        }
        // A signal to any rank stops every rank after the same step.
        if (world_ ? world_->any(g_stop_signal != 0) : g_stop_signal != 0) {
          bar.finish("interrupted");
          save_last();
          summary.interrupted = true;
          return finish(summary);
        }
        if (options_.max_steps > 0 && position_.global_step >= options_.max_steps) {
          stop_for_steps = true;
          break;
        }
      }
      bar.finish();
      if (!stop_for_steps) {
        ++position_.epoch;
        position_.batch_in_epoch = 0;
        ++position_.epochs_completed;
      }
      validate();
      save_last();
    }
    return finish(summary);
  }

  TrainSummary finish(TrainSummary summary) const {
    summary.steps = position_.global_step;
    summary.epochs_completed = position_.epochs_completed;
    summary.best_rsum = position_.best_rsum;
    return summary;
  }

  TrainOptions options_;
  torch::Device device_;
  Communicator* world_;
  std::unique_ptr<PrecompSplit> train_, val_;
  Model model_;
  std::unique_ptr<torch::optim::Adam> optimizer_;
  Position position_;
};

}  // namespace

std::vector<std::int64_t> epoch_order(std::int64_t captions, std::uint64_t seed, int epoch, bool shuffle) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(captions));
  for (std::int64_t i = 0; i < captions; ++i) order[std::size_t(i)] = i;
  if (!shuffle) return order;
  std::uint64_t state = seed * 0x100000001B3ull + std::uint64_t(epoch);
  for (std::int64_t i = captions - 1; i > 0; --i) {
    const auto j = std::int64_t(splitmix64(state) % std::uint64_t(i + 1));
    std::swap(order[std::size_t(i)], order[std::size_t(j)]);
  }
  return order;
}

nlohmann::ordered_json to_json(const TrainOptions& o) {
  return {{"data_dir", o.data_dir},
          {"model", to_json(o.model)},
          {"vocab_path", o.vocab_path},
          {"init_from", o.init_from},
          {"margin", o.margin},
          {"max_violation", o.max_violation},
          {"lr", o.lr},
          {"lr_update", o.lr_update},
          {"epochs", o.epochs},
          {"batch_size", o.batch_size},
          {"grad_clip", o.grad_clip},
          {"global_weight", o.global_weight},
          {"max_steps", o.max_steps},
          {"shuffle", o.shuffle},
          {"seed", o.seed},
          {"val_split", o.val_split},
          {"val_images", o.val_images},
          {"log_every", o.log_every},
          {"memory_budget", o.memory_budget}};
}

TrainOptions train_options_from_json(const nlohmann::json& json, const std::string& source) {
  TrainOptions o;
  try {
    o.data_dir = json.at("data_dir");
    o.model = model_config_from_json(json.at("model"), source);
    o.vocab_path = json.at("vocab_path");
    o.init_from = json.at("init_from");
    o.margin = json.at("margin");
    o.max_violation = json.at("max_violation");
    o.lr = json.at("lr");
    o.lr_update = json.at("lr_update");
    o.epochs = json.at("epochs");
    o.batch_size = json.at("batch_size");
    o.grad_clip = json.at("grad_clip");
    o.global_weight = json.value("global_weight", 0.0);  // absent in runs made before it existed
    o.max_steps = json.at("max_steps");
    o.shuffle = json.at("shuffle");
    o.seed = json.at("seed");
    o.val_split = json.at("val_split");
    o.val_images = json.at("val_images");
    o.log_every = json.at("log_every");
    o.memory_budget = json.at("memory_budget");
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": bad training options (" + e.what() + ")");
  }
  return o;
}

TrainSummary train(const TrainOptions& options, torch::Device device, Communicator* world) {
  if (options.batch_size < 2) throw Error("--batch-size must be >= 2 (the loss needs negatives)");
  if (options.epochs < 1) throw Error("--epochs must be >= 1");
  if (options.lr_update < 1) throw Error("--lr-update must be >= 1");
  // Above 1 Adam's steps are meaningless, and near 1e38 LibTorch fails converting lr to float.
  if (!(options.lr > 0 && options.lr <= 1)) throw Error("--lr must be in (0, 1], got " + std::to_string(options.lr));
  if (!(options.margin >= 0 && std::isfinite(options.margin)))
    throw Error("--margin must be a finite number >= 0, got " + std::to_string(options.margin));
  if (!std::isfinite(options.grad_clip)) throw Error("--grad-clip must be finite");
  if (options.log_every < 1) throw Error("log_every must be >= 1");
  return Run(options, device, world).start();
}

TrainSummary resume_training(const std::string& run_dir, std::int64_t max_steps, int epochs, bool show_progress,
                             torch::Device device, Communicator* world) {
  return Run(TrainOptions{}, device, world).resume(run_dir, max_steps, epochs, show_progress);
}

}  // namespace imram
