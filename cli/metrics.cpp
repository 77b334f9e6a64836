#include <iostream>

#include "command.h"
#include "imram/data/npy.h"
#include "imram/metrics/recall.h"
#include "imram/runtime/runtime.h"

void imram::cli::add_metrics_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string sims;
    bool fold5 = false;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  auto* sub = root.add_subcommand("metrics", "R@K, medr, meanr and rsum of a score matrix");
  sub->add_option("--sims", options->sims, "(images x captions) scores, .npy; caption j belongs to image j // 5")
      ->required();
  sub->add_flag("--fold5", options->fold5, "COCO 1K protocol: average over five 1000-image folds");
  sub->add_flag("--json", options->json, "print one JSON line");
  sub->callback([&invocation, options] {
    invocation.brief = true;
    invocation.run = [options] {
      const auto array = imram::NpyArray::open(options->sims);
      array.require_ndim(2);
      const auto images = array.dim(0), captions = array.dim(1);
      const auto sims = imram::to_double(array);
      const auto metrics =
          imram::metrics_of_matrix(sims.data(), images, captions, options->fold5, options->sims, imram::thread_count());
      std::cout << (options->json ? imram::metrics_json(metrics) + "\n" : imram::metrics_table(metrics));
      return 0;
    };
  });
}
