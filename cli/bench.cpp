#include <iostream>

#include "bench/benchmarks.h"
#include "bench/features_bench.h"
#include "bench/search_bench.h"
#include "command.h"
#include "imram/engine/doctor.h"

namespace {

void add_model_options(CLI::App* sub, imram::ModelConfig& model, std::string& mode, std::int64_t& regions) {
  sub->add_option("--mode", mode, "text | image | full")
      ->check(CLI::IsMember({"text", "image", "full"}))
      ->capture_default_str();
  sub->add_option("--steps", model.iteration_steps, "K")->capture_default_str();
  sub->add_option("--embed", model.embed_size, "d")->capture_default_str();
  sub->add_option("--regions", regions, "R")->capture_default_str();
}

}  // namespace

void imram::cli::add_bench_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  auto* bench = root.add_subcommand("bench", "benchmarks (engine vs the authors' algorithm, same run)");
  bench->require_subcommand(1);

  struct ScoreArgs {
    imram::ScoreBenchOptions options;
    std::string mode = "text", lengths_file;
    std::size_t memory_budget_mb = 1024;
    bool json = false;
  };
  auto s = std::make_shared<ScoreArgs>();
  s->options.model.mode = imram::ImramMode::Text;
  auto* score = bench->add_subcommand("score", "exhaustive pair scoring: pairs/s, GFLOP/s, peak memory");
  add_model_options(score, s->options.model, s->mode, s->options.regions);
  score->add_option("--images", s->options.images, "N")->capture_default_str();
  score->add_option("--captions", s->options.captions, "M (default 5 N)");
  score->add_option("--caption-lengths", s->lengths_file, "sample lengths from this caption file (tokens + 2)");
  score->add_option("--baseline-pairs", s->options.baseline_pairs, "pairs for the reference baseline (0: none)")
      ->capture_default_str();
  score->add_option("--memory-budget", s->memory_budget_mb, "MB per engine block")
      ->capture_default_str()
      ->check(imram::cli::kMemoryBudgetRange);
  score->add_option("--image-block", s->options.image_block, "images per engine block (default: from the budget)");
  score->add_option("--caption-block", s->options.caption_block,
                    "captions per engine block (default: from the budget)");
  score->add_option("--engine-path", s->options.engine_path, "auto, fused_cpu or tensor (engine/matching.h)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fused_cpu", "tensor"}));
  score->add_flag("--json", s->json, "one JSON line");
  score->callback([&invocation, s] {
    invocation.run = [s, &invocation] {
      s->options.device = invocation.globals.device;
      s->options.model.mode = imram::parse_mode(s->mode);
      s->options.memory_budget = s->memory_budget_mb << 20;
      if (!s->lengths_file.empty()) s->options.caption_lengths = imram::caption_lengths_of(s->lengths_file);
      const auto r = imram::bench_score(s->options);
      if (s->json) {
        std::cout << imram::to_json(r, s->options) << "\n";
      } else {
        std::printf("%s-IMRAM K=%d d=%lld R=%lld, %lld x %lld pairs, %s, %d threads\n", s->mode.c_str(),
                    s->options.model.iteration_steps, (long long)s->options.model.embed_size,
                    (long long)s->options.regions, (long long)s->options.images,
                    (long long)(s->options.captions > 0 ? s->options.captions : 5 * s->options.images),
                    r.device.c_str(), r.threads);
        std::printf("engine     %10.1f pairs/s  %6.1f GFLOP/s  (%.2f MFLOP/pair)  %.1f s\n", r.pairs_per_s, r.gflops,
                    r.flops_per_pair / 1e6, r.seconds);
        if (r.baseline_pairs_per_s > 0)
          std::printf("reference  %10.1f pairs/s  -> %.2fx; max |diff| %.2g\n", r.baseline_pairs_per_s, r.speedup,
                      r.max_abs_diff_vs_baseline);
        std::printf("peak RSS   %.0f MB\n", r.peak_rss_mb);
      }
      return 0;
    };
  });

  struct SearchArgs {
    imram::SearchBenchOptions options;
    std::string mode = "text";
    bool json = false, quiet = false;
  };
  auto q = std::make_shared<SearchArgs>();
  q->options.model.mode = imram::ImramMode::Text;
  auto* search =
      bench->add_subcommand("search", "two-stage search over a random gallery: build, latency, vs exhaustive");
  add_model_options(search, q->options.model, q->mode, q->options.regions);
  search->add_option("--images", q->options.images, "gallery images")
      ->capture_default_str()
      ->check(imram::cli::kAtLeastOne);
  search->add_option("--feat-dim", q->options.feature_dim, "D, region feature size")->capture_default_str();
  search->add_option("--captions", q->options.captions, "stored captions")
      ->capture_default_str()
      ->check(imram::cli::kAtLeastOne);
  imram::cli::add_shortlist_option(search, q->options.shortlist, "N candidates all K steps score (as imram search)");
  imram::cli::add_prefilter_option(search, q->options.prefilter,
                                   "a cascade: FAISS proposes this many, IMRAM's first step keeps --shortlist of them");
  imram::cli::add_step1_option(search, q->options.step1);
  search->add_flag("!--no-codes", q->options.codes, "build the index without codes (index build --no-codes)");
  search
      ->add_option("--residual-bits", q->options.residual_bits,
                   "keep residuals of B bits per value (index build --residual-bits; 2 with --no-exact-store)")
      ->check(CLI::IsMember({0, 1, 2, 4, 8}));
  search->add_flag("!--no-exact-store", q->options.exact_store,
                   "build the index without its exact store (index build --no-exact-store)");
  search
      ->add_option("--commit-every", q->options.commit_every,
                   "commit every N images and add the rest as index add does (0: one commit)")
      ->check(imram::cli::kNonNegative);
  search->add_option("--codebook", q->options.codebook_size, "centroids of each codebook (index build --codebook)")
      ->check(imram::cli::kNonNegative);
  search->add_flag("--reuse", q->options.reuse,
                   "search the index an earlier run left in --dir (same model options), build nothing");
  search->add_option("--queries", q->options.queries, "timed text queries")
      ->capture_default_str()
      ->check(imram::cli::kAtLeastOne);
  search
      ->add_option("--image-queries", q->options.image_queries,
                   "timed image queries (stored images ranking the captions, default lists of that side)")
      ->check(CLI::NonNegativeNumber);
  search->add_option("--exhaustive-queries", q->options.exhaustive_queries, "of them, also scored exhaustively")
      ->capture_default_str();
  search->add_option("--batch", q->options.batch, "also time this many exhaustive queries one by one and together")
      ->check(CLI::Range(0, 4096));
  search->add_option("--faiss", q->options.faiss, "FAISS factory (default: chosen by gallery size)");
  search->add_option("--store", q->options.store, "float16 | float32")
      ->check(CLI::IsMember({"float16", "float32"}))
      ->capture_default_str();
  search->add_flag("--memory-halves", q->options.memory_halves,
                   "store the items' memory halves (index build --memory-halves)");
  search->add_option("--dir", q->options.dir, "build the index here and keep it (default: a temporary directory)");
  search->add_flag("--json", q->json, "one JSON line (the default output too)");
  search->add_flag("--quiet", q->quiet, "no progress output");
  search->callback([&invocation, q] {
    invocation.run = [q, &invocation] {
      q->options.device = invocation.globals.device;
      q->options.model.mode = imram::parse_mode(q->mode);
      q->options.show_progress = !q->quiet;
      std::cout << imram::bench_search(q->options) << "\n";
      return 0;
    };
  });

  struct TrainArgs {
    imram::TrainBenchOptions options;
    std::string mode = "full";
    bool json = false, no_baseline = false;
  };
  auto t = std::make_shared<TrainArgs>();
  auto* train = bench->add_subcommand("train", "seconds per training step");
  add_model_options(train, t->options.model, t->mode, t->options.regions);
  train->add_option("--batch-size", t->options.batch_size, "B")->capture_default_str();
  train->add_option("--iterations", t->options.iterations, "timed steps")->capture_default_str();
  train->add_flag("--no-baseline", t->no_baseline, "skip the reference-algorithm step");
  train->add_flag("--json", t->json, "one JSON line");
  train->callback([&invocation, t] {
    invocation.run = [t, &invocation] {
      t->options.device = invocation.globals.device;
      t->options.model.mode = imram::parse_mode(t->mode);
      t->options.baseline = !t->no_baseline;
      const auto r = imram::bench_train(t->options);
      if (t->json) {
        std::cout << imram::to_json(r, t->options) << "\n";
      } else {
        std::printf("engine     %.3f s/step\n", r.seconds_per_step);
        if (t->options.baseline)
          std::printf("reference  %.3f s/step -> %.2fx\n", r.baseline_seconds_per_step, r.speedup);
        std::printf("peak RSS   %.0f MB, %s, %d threads\n", r.peak_rss_mb, r.device.c_str(), r.threads);
      }
      return 0;
    };
  });

  auto f = std::make_shared<imram::FeaturesBenchOptions>();
  auto* features = bench->add_subcommand(
      "features", "the pictures pipeline of imram features on generated JPEGs: decode + resize rate, backbone rate");
  features->add_option("--pictures", f->pictures, "generated JPEGs")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  features->add_option("--width", f->width, "their width")->capture_default_str()->check(CLI::Range(16, 8192));
  features->add_option("--height", f->height, "their height")->capture_default_str()->check(CLI::Range(16, 8192));
  features->add_option("--size", f->size, "the backbone's input side")
      ->capture_default_str()
      ->check(CLI::Range(8, 4096));
  features->add_option("--decode-threads", f->threads, "decoding threads of the second pipeline run")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  features->add_option("--backbone", f->backbone, "also time this TorchScript grid backbone");
  features->add_option("--batch-size", f->batch_size, "pictures per backbone call")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  features->callback([&invocation, f] {
    invocation.run = [f, &invocation] {
      f->device = invocation.globals.device;
      std::cout << imram::bench_features(*f) << "\n";
      return 0;
    };
  });
}
