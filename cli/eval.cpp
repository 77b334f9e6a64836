#include <iostream>
#include <vector>

#include "command.h"
#include "imram/error.h"
#include "imram/eval/evaluator.h"
#include "imram/eval/index_evaluation.h"
#include "imram/model/tensor_io.h"
#include "imram/runtime/runtime.h"
#include "imram/search/search_params.h"
#include "imram/train/distributed.h"
#include "imram/train/distributed_validation.h"
#include "imram/train/launch.h"
#include "imram/util/atomic_file.h"
#include "nproc_option.h"
#include "search_options.h"

void imram::cli::add_eval_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string model, data, split = "test", save_sims, save_json, index;
    bool fold5 = false, json = false, skip_exhaustive = false;
    // Several values (with --queries): every pair of them is measured on the same sample.
    std::vector<std::int64_t> shortlists{imram::kDefaultShortlist}, prefilters{imram::kDefaultPrefilter},
        step1s{imram::kDefaultStep1};
    std::int64_t queries = 0, image_queries = -1;
    std::uint64_t seed = 1;
    std::size_t memory_budget_mb = 1024;
    imram::SearchParams params;
    imram::cli::NprocOptions world;
  };
  auto options = std::make_shared<Options>();
  auto* sub = root.add_subcommand("eval", "R@K evaluation of a model on a dataset split");
  auto* index = sub->add_option("--index", options->index,
                                "index directory: exhaustive, two-stage and stage-1 retrieval side by side");
  sub->add_option("--model", options->model, "model directory")->excludes(index);
  sub->add_option("--data", options->data, "dataset directory")->excludes(index);
  imram::cli::add_shortlist_option(sub, options->shortlists,
                                   "two-stage shortlist size N (with --index; with --queries, a list: N,N',...)")
      ->delimiter(',');
  imram::cli::add_prefilter_option(sub, options->prefilters,
                                   "with --index: FAISS proposes this many, IMRAM's first step keeps --shortlist of "
                                   "them (with --queries, a list)")
      ->delimiter(',');
  imram::cli::add_step1_option(sub, options->step1s)->delimiter(',');
  imram::cli::add_search_params_options(sub, options->params);
  sub->add_option("--queries", options->queries,
                  "with --index: a sample of this many queries per direction, each held to exhaustive IMRAM "
                  "(ranks, shortlist recall); for galleries too large to score every pair")
      ->check(imram::cli::kAtLeastOne);
  sub->add_option("--image-queries", options->image_queries,
                  "with --queries: image queries instead of as many as text ones (0: text queries only; an image "
                  "query against a large gallery scores five captions per image)")
      ->check(imram::cli::kNonNegative);
  sub->add_option("--seed", options->seed, "with --queries: which queries are sampled")->capture_default_str();
  sub->add_flag("--skip-exhaustive", options->skip_exhaustive, "with --index: do not score every pair");
  sub->add_option("--split", options->split, "split name (not with --index: it holds its own gallery)")
      ->check(imram::cli::kSplitName)
      ->capture_default_str()
      ->excludes(index);
  sub->add_flag("--fold5", options->fold5, "COCO 1K protocol: five 1000-image folds, averaged");
  sub->add_option("--save-sims", options->save_sims, "write the score matrix (float64 .npy)");
  sub->add_flag("--json", options->json, "print one JSON line");
  sub->add_option("--save-json", options->save_json, "also write the JSON line to this file");
  sub->add_option("--memory-budget", options->memory_budget_mb, "MB for the engine's per-block work")
      ->capture_default_str()
      ->check(imram::cli::kMemoryBudgetRange);
  imram::cli::add_nproc_options(
      sub, options->world,
      "each scores its share of the captions, and with --index of the queries or the sample; rank 0 reports");
  sub->callback([&invocation, options] {
    imram::cli::check_nproc(options->world);
    invocation.run = [options, device = invocation.globals.device, threads = invocation.globals.threads] {
      if (options->world.nproc > 1)
        return imram::run_local_world(options->world.nproc, imram::command_line_without_nproc());
      if (!options->index.empty()) {
        if (options->fold5 || !options->save_sims.empty())
          throw imram::Error("eval --index: --fold5 and --save-sims need --model and --data");
        if (options->queries == 0 &&
            (options->shortlists.size() != 1 || options->prefilters.size() != 1 || options->step1s.size() != 1))
          throw imram::Error(
              "eval --index: several --shortlist, --prefilter or --step1 values need --queries (a "
              "sampled evaluation compares them on one sample)");
        // A rank of a world (--nproc, torchrun or srun) takes its share of the pairs and queries;
        // the search layer sees the communicator only through this WorldShare.
        auto joined = imram::join_world(imram::parse_device(device), /*threads_given=*/threads > 0);
        imram::WorldShare share;
        if (joined.communicator) share = imram::share_of_world(*joined.communicator);
        const auto* shared = joined.communicator ? &share : nullptr;
        const auto opened = imram::GalleryIndex::open(options->index, joined.device);
        // The JSON line (printed with --json, saved with --save-json) or the table, by rank 0.
        const auto report = [&](const std::string& json, const std::string& table) {
          if (joined.communicator) joined.communicator->close();
          if (!joined.reports()) return 0;
          if (!options->save_json.empty())
            imram::write_file_atomically(options->save_json, [&](std::ostream& out) { out << json << "\n"; });
          std::cout << (options->json ? json + "\n" : table);
          return 0;
        };
        if (options->queries > 0) {
          imram::SampledEvalOptions sampled;
          sampled.queries = options->queries;
          sampled.image_queries = options->image_queries;
          sampled.settings.clear();
          for (const auto shortlist : options->shortlists)
            for (const auto prefilter : options->prefilters)
              for (const auto step1 : options->step1s) sampled.settings.push_back({shortlist, prefilter, step1});
          sampled.seed = options->seed;
          sampled.params = options->params;
          sampled.show_progress = !options->json && joined.reports();
          const auto result = imram::evaluate_index_sampled(*opened, sampled, shared);
          return report(imram::sampled_json(result), imram::sampled_table(result));
        }
        imram::TwoStageEvalOptions eval_options;
        eval_options.shortlist = options->shortlists.front();
        eval_options.prefilter = options->prefilters.front();
        eval_options.step1 = options->step1s.front();
        eval_options.exhaustive = !options->skip_exhaustive || eval_options.shortlist == 0;
        eval_options.params = options->params;
        eval_options.show_progress = joined.reports();
        const auto result = imram::evaluate_index(*opened, eval_options, shared);
        return report(imram::two_stage_json(result), imram::two_stage_table(result));
      }
      if (options->model.empty() || options->data.empty())
        throw imram::Error("eval: give --model M and --data DIR, or --index INDEX");
      // A rank of a world (--nproc, torchrun or srun) scores its share of the captions.
      auto joined = imram::join_world(imram::parse_device(device), /*threads_given=*/threads > 0);
      auto model = imram::load_model(options->model, joined.device);
      if (!model.vocabulary) throw imram::Error(options->model + ": model has no vocab.json");
      const auto split = imram::PrecompSplit::open(options->data, options->split);
      imram::EvalOptions eval_options;
      eval_options.fold5 = options->fold5;
      eval_options.dataset_dir = options->data;
      eval_options.memory_budget = options->memory_budget_mb << 20;
      eval_options.show_progress = joined.reports();
      const auto result = joined.communicator ? imram::evaluate_in_world(*model.net, *model.vocabulary, split,
                                                                         eval_options, *joined.communicator)
                                              : imram::evaluate(*model.net, *model.vocabulary, split, eval_options);
      if (joined.communicator) joined.communicator->close();
      if (!joined.reports()) return 0;
      if (!options->save_sims.empty()) imram::save_npy_tensor(options->save_sims, result.sims.to(torch::kFloat64));
      if (!options->save_json.empty())
        imram::write_file_atomically(options->save_json,
                                     [&](std::ostream& out) { out << imram::eval_json(result) << "\n"; });
      if (options->json) {
        std::cout << imram::eval_json(result) << "\n";
      } else {
        const auto images = result.sims.size(0), captions = result.sims.size(1);
        std::cout << imram::metrics_table_with_chance(result.metrics, options->fold5 ? images / 5 : images,
                                                      options->fold5 ? captions / 5 : captions,
                                                      split.captions_per_image());
        if (result.twin_accuracy) std::cout << "twin accuracy " << *result.twin_accuracy << "\n";
      }
      return 0;
    };
  });
}
