// imram features: pictures to region features with a TorchScript backbone, in the precomputed
// layout the other commands read (features/extraction.h, docs/features.md).
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "picture_size.h"
#include "imram/error.h"
#include "imram/features/extraction.h"
#include "imram/model/config.h"
#include "imram/runtime/runtime.h"

void imram::cli::add_features_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string backbone, images, out, split, contract = "grid", size = "224", model;
    std::vector<float> mean{0.485f, 0.456f, 0.406f}, std{0.229f, 0.224f, 0.225f};
    imram::FeatureOptions features;
    bool quiet = false, json = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = root.add_subcommand(
      "features",
      "compute region features of pictures with a TorchScript backbone: writes {split}_ims.npy, "
      "{split}_images.txt/.jsonl (sources, boxes), {split}_skipped.txt; a rerun resumes (docs/features.md)");
  sub->add_option("--backbone", o->backbone, "TorchScript module (docs/features.md: exporting one)")->required();
  sub->add_option("--images", o->images, "folder of pictures (searched recursively) or a file listing them")->required();
  sub->add_option("--out", o->out, "dataset directory to write into")->required();
  sub->add_option("--split", o->split, "split name: the files are {split}_ims.npy, ...")->check(imram::cli::kSplitName)->required();
  sub->add_option("--contract", o->contract, "grid: images -> feature map; detector: image -> (boxes, features, scores)")
      ->check(CLI::IsMember({"grid", "detector"}))->capture_default_str();
  sub->add_option("--regions", o->features.regions, "a detector's regions per picture (top by score)")
      ->capture_default_str()->check(CLI::Range(1, imram::kMaxRegions));
  sub->add_option("--size", o->size, "input size: N (square) or WxH; pictures are stretched to it")->capture_default_str();
  sub->add_option("--mean", o->mean, "per-channel mean (RGB, after scaling to [0, 1])")->expected(3)->capture_default_str();
  sub->add_option("--std", o->std, "per-channel standard deviation")->expected(3)->capture_default_str();
  sub->add_option("--model", o->model, "refuse a backbone whose feature size is not this model's img_dim");
  sub->add_option("--batch-size", o->features.batch_size, "pictures per backbone call")
      ->capture_default_str()->check(CLI::Range(1, 4096));
  sub->add_option("--decode-threads", o->features.decode_threads, "threads decoding pictures ahead of the backbone")
      ->capture_default_str()->check(CLI::Range(1, 64));
  sub->add_option("--max-pixels", o->features.limits.max_pixels, "skip pictures with more pixels than this")
      ->capture_default_str()->check(imram::cli::kAtLeastOne);
  sub->add_flag("--quiet", o->quiet, "no progress output");
  sub->add_flag("--json", o->json, "print the summary as one JSON line");
  sub->callback([&invocation, o] {
    invocation.run = [o, device = invocation.globals.device] {
      auto& options = o->features;
      options.backbone = o->backbone;
      options.contract = imram::parse_backbone_contract(o->contract);
      options.device = imram::parse_device(device);
      options.show_progress = !o->quiet;
      imram::cli::parse_picture_size(o->size, options.preprocessing.width, options.preprocessing.height);
      for (int c = 0; c < 3; ++c) {
        if (!(o->std[std::size_t(c)] > 0)) throw imram::Error("--std values must be positive");
        options.preprocessing.mean[std::size_t(c)] = o->mean[std::size_t(c)];
        options.preprocessing.std[std::size_t(c)] = o->std[std::size_t(c)];
      }
      if (!o->model.empty())
        options.feature_dim = imram::load_model_config((std::filesystem::path(o->model) / "config.json").string()).img_dim;
      const auto warn = [](const std::string& line) { std::cerr << "imram: warning: " << line << std::endl; };
      const auto pictures = imram::list_pictures(o->images, warn);
      const auto s = imram::extract_features(pictures, o->out, o->split, options, warn);
      if (o->json) {
        std::cout << nlohmann::json{{"features", s.features_path}, {"pictures", s.rows},   {"computed", s.computed},
                                    {"skipped", s.skipped},        {"regions", s.regions}, {"feature_dim", s.feature_dim},
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
