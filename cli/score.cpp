#include <torch/torch.h>

#include <iostream>

#include "command.h"
#include "imram/data/captions.h"
#include "imram/engine/encoding.h"
#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "imram/model/model_dir.h"
#include "imram/model/tensor_io.h"
#include "imram/runtime/runtime.h"
#include "imram/util/progress.h"

void imram::cli::add_score_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string model, images, caption_ids, lengths, captions, out, dtype = "float64";
    std::size_t memory_budget_mb = 1024;
  };
  auto options = std::make_shared<Options>();
  auto* sub = root.add_subcommand("score", "score matrix S (images x captions) of a model");
  sub->add_option("--model", options->model, "model directory")->required();
  sub->add_option("--images", options->images, "region features (N, R, D) float32 .npy")->required();
  auto* ids = sub->add_option("--caption-ids", options->caption_ids, "token ids (M, L) .npy, zero-padded");
  auto* lengths = sub->add_option("--lengths", options->lengths, "caption lengths (M) .npy, <start>/<end> included");
  auto* text = sub->add_option("--captions", options->captions, "caption text file, one per line");
  ids->needs(lengths);
  lengths->needs(ids);
  text->excludes(ids)->excludes(lengths);
  sub->add_option("--out", options->out, "score matrix .npy to write")->required();
  sub->add_option("--dtype", options->dtype, "float32 or float64")
      ->check(CLI::IsMember({"float32", "float64"}))
      ->capture_default_str();
  sub->add_option("--memory-budget", options->memory_budget_mb, "MB for the engine's per-block work")
      ->capture_default_str()
      ->check(imram::cli::kMemoryBudgetRange);
  sub->callback([&invocation, options] {
    invocation.run = [options, device = invocation.globals.device] {
      if (options->captions.empty() && options->caption_ids.empty())
        throw imram::Error("score: give --captions or --caption-ids with --lengths");
      auto model = imram::load_model(options->model, imram::parse_device(device));
      imram::TokenIds captions;
      if (!options->captions.empty()) {
        if (!model.vocabulary)
          throw imram::Error(options->model + ": model has no vocab.json; score --caption-ids instead");
        captions =
            imram::encode_caption_texts(*model.vocabulary, imram::read_captions(options->captions), options->captions);
      } else {
        captions = imram::read_caption_ids(options->caption_ids, options->lengths, model.config().vocab_size);
      }
      const auto features = imram::NpyArray::open(options->images);
      const auto images = imram::encode_image_file(*model.net, features);
      const auto encoded = imram::encode_caption_ids(*model.net, captions);
      torch::NoGradGuard no_grad;
      imram::ProgressBar bar("scoring", images.regions.size(0) * encoded.words.size(0), "pairs");
      imram::ScoreOptions score_options;
      score_options.memory_budget = options->memory_budget_mb << 20;
      score_options.progress = [&](std::int64_t done, std::int64_t) { bar.update(done); };
      auto scores = imram::score_pairs(*model.net, images, encoded, score_options).total;
      bar.finish();
      imram::save_npy_tensor(options->out, options->dtype == "float64" ? scores.to(torch::kFloat64) : scores);
      std::cout << "wrote " << options->out << " (" << scores.size(0) << " x " << scores.size(1) << ")\n";
      return 0;
    };
  });
}
