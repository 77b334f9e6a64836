// imram synth: writes the synthetic shapes-world dataset in the precomputed layout, so that
// train, eval, search and the demo run on it exactly as on Flickr30K/COCO features.
#include <functional>
#include <iostream>
#include <memory>

#include "command.h"
#include "imram/data/synthetic.h"
#include "imram/image/render.h"
#include "imram/runtime/runtime.h"

namespace {
struct SynthArguments {
  std::string out;
  imram::SyntheticOptions options;
  bool render = false;
  int render_size = 224;
  std::string render_format = "png";
};
}  // namespace

void imram::cli::add_synth_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  auto args = std::make_shared<SynthArguments>();
  auto& o = args->options;
  // The defaults are the real datasets' feature size, on which a one-epoch model scores at chance.
  auto* sub = root.add_subcommand(
      "synth",
      "generate the synthetic shapes-world dataset. The demo's world (scripts/demo.sh), which a CPU trains in "
      "minutes: --train 4000 --dev 500 --test 500 --regions 16 --feat-dim 256. The defaults (36 regions x 2048 "
      "features, the size of Faster R-CNN features) need many epochs before retrieval beats chance");
  sub->add_option("--out", args->out, "dataset directory (created if missing)")->required();
  sub->add_option("--seed", o.seed, "random seed; a seed always gives the same files")->capture_default_str();
  sub->add_option("--train", o.train, "train images (even: twin pairs)")->capture_default_str();
  sub->add_option("--dev", o.dev, "dev images (even)")->capture_default_str();
  sub->add_option("--test", o.test, "test images (even)")->capture_default_str();
  sub->add_option("--regions", o.regions, "regions per image")->capture_default_str();
  sub->add_option("--feat-dim", o.feature_dim, "features per region")->capture_default_str();
  sub->add_option("--shapes", o.shapes, "shapes in use")->capture_default_str();
  sub->add_option("--colours", o.colours, "colours in use")->capture_default_str();
  sub->add_option("--position-twins", o.position_twins,
                  "fraction of twin pairs that differ by positions instead of colours")
      ->capture_default_str();
  sub->add_flag("--render", args->render,
                "also paint every scene as a picture: {out}/pictures/{split}/{image:06d}.png (for imram features)");
  sub->add_option("--render-size", args->render_size, "side of the rendered pictures")
      ->capture_default_str()
      ->check(CLI::Range(16, 4096));
  sub->add_option("--render-format", args->render_format, "png or jpg")
      ->check(CLI::IsMember({"png", "jpg"}))
      ->capture_default_str();
  sub->callback([&invocation, args] {
    try {
      imram::validate_synthetic_options(args->options);
    } catch (const imram::Error& e) {
      throw CLI::ValidationError("synth", e.what());
    }
    invocation.run = [&invocation, args] {
      args->options.threads = invocation.globals.threads;
      const auto render = [&](const std::string& dataset) {
        for (const char* split : {"train", "dev", "test"}) {
          const auto count = imram::render_split_pictures(dataset, split, args->render_size, args->render_format,
                                                          imram::thread_count());
          std::cout << split << ": " << count << " pictures in " << args->out << "/pictures/" << split << std::endl;
        }
      };
      imram::write_synthetic_dataset(
          args->out, args->options, [](const std::string& line) { std::cout << line << std::endl; },
          args->render ? std::function<void(const std::string&)>(render) : nullptr);
      return 0;
    };
  });
}
