#include <iostream>

#include "command.h"
#include "imram/error.h"
#include "imram/eval/evaluator.h"
#include "imram/runtime/runtime.h"
#include "imram/train/global_fit.h"

void imram::cli::add_train_global_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string model, data, out, val_split = "dev";
    imram::GlobalFitOptions fit;
    std::int64_t val_images = 1000;
    std::string pooling = "gpo";
    bool quiet = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = root.add_subcommand("train-global",
                                  "fit only the global-embedding head of a trained model (for two-stage search)");
  sub->add_option("--model", o->model, "model directory (frozen)")->required();
  sub->add_option("--data", o->data, "dataset directory with a train split")->required();
  sub->add_option("--out", o->out, "model directory to write: the model plus its head")->required();
  sub->add_option("--epochs", o->fit.epochs, "epochs over the train captions")
      ->capture_default_str()
      ->check(imram::cli::kAtLeastOne);
  sub->add_option("--batch-size", o->fit.batch_size, "pairs per batch")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  sub->add_option("--lr", o->fit.lr, "Adam learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--margin", o->fit.margin, "hinge margin")->capture_default_str()->check(imram::cli::kNonNegative);
  sub->add_option("--dim", o->fit.dim, "head size for a model without one (default: embed size)")
      ->check(imram::cli::kNonNegative);
  sub->add_option("--pooling", o->pooling, "pooling of a new head: gpo (learned, VSE-infinity's) or mean")
      ->capture_default_str()
      ->check(CLI::IsMember({"gpo", "mean"}));
  sub->add_option("--distill", o->fit.distill,
                  "weight of distillation: the head learns IMRAM's order of each item's likeliest confusions (0: off)")
      ->capture_default_str()
      ->check(imram::cli::kNonNegative);
  sub->add_option("--distill-candidates", o->fit.distill_candidates, "confusions per item scored by IMRAM for it")
      ->capture_default_str()
      ->check(CLI::Range(2, 1024));
  sub->add_option("--seed", o->fit.seed, "initialisation and data order")->capture_default_str();
  sub->add_option("--val-split", o->val_split, "split to report stage-1 R@K on afterwards (none: skip)")
      ->check(imram::cli::kSplitName)
      ->capture_default_str();
  sub->add_option("--val-images", o->val_images, "first N images of it")
      ->capture_default_str()
      ->check(imram::cli::kAtLeastOne);
  sub->add_flag("--quiet", o->quiet, "no progress output");
  sub->callback([&invocation, o] {
    invocation.run = [o, device = invocation.globals.device] {
      if (o->out == o->model)
        throw imram::Error("train-global: --out must differ from --model (the model stays as it is)");
      auto model = imram::load_model(o->model, imram::parse_device(device));
      const auto train = imram::PrecompSplit::open(o->data, "train");
      auto fit = o->fit;
      fit.show_progress = !o->quiet;
      fit.pooling = imram::parse_global_pooling(o->pooling);
      const auto summary = imram::fit_global_head(model, train, fit);
      imram::save_model(o->out, model);
      // The teacher's time only when there is a teacher (--distill).
      char teacher[48] = "";
      if (fit.distill > 0) std::snprintf(teacher, sizeof teacher, ", teacher %.1f s", summary.teacher_seconds);
      std::printf(
          "fitted a global head of %lld outputs, %s pooling: loss %.4f -> %.4f (encoding %.1f s%s, fitting %.1f s); "
          "model in %s\n",
          static_cast<long long>(model.config().global_head), imram::to_string(model.config().global_pooling).c_str(),
          summary.first_epoch_loss, summary.last_epoch_loss, summary.encoding_seconds, teacher, summary.fitting_seconds,
          o->out.c_str());
      if (o->val_split != "none") {
        const auto val = imram::PrecompSplit::open(o->data, o->val_split);
        imram::EvalOptions options;
        options.max_images = o->val_images;
        options.show_progress = false;
        const auto result = imram::evaluate_global(*model.net, *model.vocabulary, val, options);
        std::printf("stage 1 alone on %s (%lld images): R@1 i2t %.1f t2i %.1f, rsum %.1f\n", o->val_split.c_str(),
                    static_cast<long long>(result.sims.size(0)), result.metrics.i2t.r1, result.metrics.t2i.r1,
                    result.metrics.rsum);
      }
      return 0;
    };
  });
}
