#include <algorithm>
#include <iostream>

#include "command.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/train/distributed.h"
#include "imram/train/launch.h"
#include "imram/train/trainer.h"
#include "nproc_option.h"

namespace {
std::string best_rsum_text(const imram::TrainSummary& summary) {
  return summary.best_rsum < 0 ? std::string("; no validation") : "; best rsum " + std::to_string(summary.best_rsum);
}
}  // namespace

void imram::cli::add_train_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    imram::TrainOptions train;
    std::string mode = "full", raw_feature_norm = "clipped_l2norm", resume;
    std::string global_pooling = "gpo";
    bool uni_gru = false, sum_violation = false, imram_norm = false, no_imram_norm = false;
    bool no_shuffle = false, quiet = false;
    imram::cli::NprocOptions world;
  };
  auto o = std::make_shared<Options>();
  auto& t = o->train;
  auto* sub = root.add_subcommand("train", "train an IMRAM model on a precomputed dataset");
  sub->add_option("--data", t.data_dir, "dataset directory (train split, and the validation split)");
  sub->add_option("--out", t.out_dir, "run directory: last/, best/, metrics.jsonl");
  sub->add_option("--resume", o->resume, "continue the run in this directory")->excludes(sub->get_option("--data"));
  sub->add_option("--mode", o->mode, "text | image | full")
      ->check(CLI::IsMember({"text", "image", "full"}))
      ->capture_default_str();
  sub->add_option("--steps", t.model.iteration_steps, "K, attention steps")->capture_default_str();
  sub->add_option("--lambda", t.model.lambda_softmax, "softmax inverse temperature")->capture_default_str();
  sub->add_option("--raw-feature-norm", o->raw_feature_norm, "clipped_l2norm | l2norm | clipped | no_norm | softmax")
      ->check(CLI::IsMember({"clipped_l2norm", "l2norm", "clipped", "no_norm", "softmax"}))
      ->capture_default_str();
  sub->add_option("--embed-size", t.model.embed_size, "d, joint embedding size")->capture_default_str();
  sub->add_option("--word-dim", t.model.word_dim, "word embedding size")->capture_default_str();
  sub->add_option("--num-layers", t.model.num_layers, "GRU layers")->capture_default_str();
  auto* bi = sub->add_flag("--bi-gru", "bidirectional GRU, directions averaged (default)");
  sub->add_flag("--uni-gru", o->uni_gru, "unidirectional GRU")->excludes(bi);
  sub->add_option("--margin", t.margin, "hinge margin")->capture_default_str()->check(imram::cli::kNonNegative);
  auto* max_violation = sub->add_flag("--max-violation", "hardest negative only (default)");
  sub->add_flag("--sum-violation", o->sum_violation, "sum over all negatives")->excludes(max_violation);
  sub->add_option("--lr", t.lr, "Adam learning rate")->capture_default_str();
  sub->add_option("--lr-update", t.lr_update, "epochs between x0.1 learning-rate decays")->capture_default_str();
  sub->add_option("--epochs", t.epochs, "epochs")->capture_default_str();
  sub->add_option("--batch-size", t.batch_size, "pairs per batch")->capture_default_str();
  sub->add_option("--grad-clip", t.grad_clip, "gradient-norm clip (<= 0: none)")->capture_default_str();
  sub->add_option("--global-weight", t.global_weight,
                  "train a global-embedding head for two-stage search, its hinge loss weighted by W")
      ->check(imram::cli::kNonNegative);
  sub->add_option("--global-dim", t.model.global_head, "size of the global embedding (default: embed size)")
      ->check(imram::cli::kNonNegative);
  sub->add_option("--global-pooling", o->global_pooling,
                  "pooling of that head: gpo or mean (imram train-global --pooling)")
      ->capture_default_str()
      ->check(CLI::IsMember({"gpo", "mean"}));
  auto* norm = sub->add_flag("--imram-norm", o->imram_norm, "l2-normalise the query after each memory update");
  sub->add_flag("--no-imram-norm", o->no_imram_norm, "do not (default, as the authors' scripts)")->excludes(norm);
  sub->add_option("--vocab", t.vocab_path, "vocabulary JSON (default: build from train+dev captions)");
  sub->add_option("--init-from", t.init_from, "start from this model directory (its options are used)");
  sub->add_option("--max-steps", t.max_steps, "stop after this many steps in total");
  sub->add_flag("--no-shuffle", o->no_shuffle, "batches are consecutive captions in file order");
  sub->add_option("--seed", t.seed, "initialisation and data order")->capture_default_str();
  sub->add_option("--val-split", t.val_split, "dev | any split | none")
      ->check(imram::cli::kSplitName)
      ->capture_default_str();
  sub->add_option("--val-images", t.val_images, "validate on the first N images of the split")->capture_default_str();
  sub->add_option("--log-every", t.log_every, "steps between metrics.jsonl lines")->capture_default_str();
  sub->add_flag("--quiet", o->quiet, "no progress output");
  imram::cli::add_nproc_options(sub, o->world, "data-parallel; --batch-size is the whole batch");
  sub->callback([&invocation, o, sub] {
    imram::cli::check_nproc(o->world);
    invocation.run = [o, sub, device = invocation.globals.device, threads = invocation.globals.threads] {
      if (o->world.nproc > 1) return imram::run_local_world(o->world.nproc, imram::command_line_without_nproc());
      auto joined = imram::join_world(imram::parse_device(device), /*threads_given=*/threads > 0);
      auto& world = joined.communicator;
      const auto compute_device = joined.device;
      const bool reports = joined.reports();
      auto options = o->train;
      options.show_progress = !o->quiet;
      if (!o->resume.empty()) {
        // The run's stored options are what --resume continues with; an option given anyway
        // would be silently ignored, so it is refused by name.
        for (const auto* option : sub->get_options()) {
          const auto name = option->get_name();
          if (option->count() > 0 && name != "--resume" && name != "--max-steps" && name != "--epochs" &&
              name != "--quiet" && name != "--help" && name != "--nproc" && name != "--nproc-max")
            throw imram::Error("train --resume: " + name +
                               " cannot change a run; it continues with its "
                               "stored options (only --max-steps, --epochs, --nproc and --quiet apply)");
        }
        const auto summary = imram::resume_training(o->resume, sub->count("--max-steps") ? options.max_steps : 0,
                                                    sub->count("--epochs") ? options.epochs : 0, options.show_progress,
                                                    compute_device, world.get());
        if (world) world->close();
        if (reports)
          std::cout << (summary.interrupted ? "interrupted" : "finished") << " at step " << summary.steps
                    << best_rsum_text(summary) << "; model in " << o->resume << "/best\n";
        return summary.interrupted ? imram::cli::kExitInterrupted : 0;
      }
      if (options.data_dir.empty() || options.out_dir.empty())
        throw imram::Error("train: --data and --out are required (or --resume RUN_DIR)");
      options.model.mode = imram::parse_mode(o->mode);
      options.model.raw_feature_norm = imram::parse_raw_feature_norm(o->raw_feature_norm);
      options.model.bi_gru = !o->uni_gru;
      options.model.imram_norm = o->imram_norm;
      if (options.model.global_head > 0 || options.global_weight > 0)
        options.model.global_pooling = imram::parse_global_pooling(o->global_pooling);
      options.max_violation = !o->sum_violation;
      options.shuffle = !o->no_shuffle;
      const auto summary = imram::train(options, compute_device, world.get());
      if (world) world->close();
      if (!reports) return summary.interrupted ? imram::cli::kExitInterrupted : 0;
      if (summary.interrupted)
        std::cout << "interrupted at step " << summary.steps << "; continue with: imram train --resume "
                  << options.out_dir << "\n";
      else
        std::cout << "finished " << summary.steps << " steps" << best_rsum_text(summary) << "; model in "
                  << options.out_dir << "/best\n";
      return summary.interrupted ? imram::cli::kExitInterrupted : 0;
    };
  });
}
