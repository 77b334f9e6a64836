// imram features: pictures to region features with a TorchScript backbone, in the precomputed
// layout the other commands read (features/extraction.h, docs/features.md).
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "imram/error.h"
#include "imram/features/extraction.h"
#include "imram/model/config.h"
#include "imram/runtime/runtime.h"
#include "imram/util/log.h"
#include "picture_options.h"

void imram::cli::add_features_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string images, out, split, model;
    imram::cli::PictureOptions pictures;
    bool quiet = false, json = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = root.add_subcommand(
      "features",
      "compute region features of pictures with a TorchScript backbone: writes {split}_ims.npy, "
      "{split}_images.txt/.jsonl (sources, boxes), {split}_skipped.txt; a rerun resumes (docs/features.md)");
  sub->add_option("--images", o->images, "folder of pictures (searched recursively) or a file listing them")
      ->required();
  sub->add_option("--out", o->out, "dataset directory to write into")->required();
  sub->add_option("--split", o->split, "split name: the files are {split}_ims.npy, ...")
      ->check(imram::cli::kSplitName)
      ->required();
  imram::cli::add_picture_options(sub, o->pictures, std::to_string(imram::FeatureOptions{}.regions))
      .front()
      ->required();
  sub->add_option("--model", o->model, "refuse a backbone whose feature size is not this model's img_dim");
  sub->add_flag("--quiet", o->quiet, "no progress output");
  sub->add_flag("--json", o->json, "print the summary as one JSON line");
  sub->callback([&invocation, o] {
    invocation.run = [o, device = invocation.globals.device] {
      auto options = o->pictures.feature_options();
      options.device = imram::parse_device(device);
      options.show_progress = !o->quiet;
      if (!o->model.empty())
        options.feature_dim =
            imram::load_model_config((std::filesystem::path(o->model) / "config.json").string()).img_dim;
      const auto warn = [](const std::string& line) { imram::log_warning(line); };
      const auto pictures = imram::list_pictures(o->images, warn);
      const auto s = imram::extract_features(pictures, o->out, o->split, options, warn);
      if (o->json) {
        std::cout << nlohmann::json{{"features", s.features_path}, {"pictures", s.rows},
                                    {"computed", s.computed},      {"skipped", s.skipped},
                                    {"regions", s.regions},        {"feature_dim", s.feature_dim},
                                    {"seconds", s.seconds}}
                         .dump()
                  << "\n";
      } else {
        std::cout << "wrote " << s.features_path << ": " << s.rows << " pictures x " << s.regions << " regions x "
                  << s.feature_dim << " features (" << s.computed << " computed now, " << s.rows - s.computed
                  << " from before; " << s.skipped << " skipped) in " << s.seconds << " s\n";
      }
      return 0;
    };
  });
}
