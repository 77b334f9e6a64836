#pragma once
// How pictures become a backbone's input, on the command line of `imram features` and of
// `imram index add --images`: one set of options, checked as usage errors (exit 2) before any
// picture is read.
#include <CLI/CLI.hpp>

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "imram/features/backbone.h"
#include "imram/features/extraction.h"

namespace imram::cli {

// "224" (a square) or "320x240" (width x height), sides 8 to 4096; an empty string when it is one.
inline std::string picture_size_problem(const std::string& text, int& width, int& height) {
  int w = 0, h = 0;
  char x = 0, extra = 0;
  std::istringstream in(text);
  if ((in >> w) && !(in >> x)) {
    h = w;
  } else if (!(x == 'x' && (in >> h) && !(in >> extra))) {
    return "--size must be N or WxH, got '" + text + "'";
  }
  if (w < 8 || h < 8 || w > 4096 || h > 4096) return "--size sides must be 8 to 4096, got '" + text + "'";
  width = w;
  height = h;
  return {};
}

struct PictureOptions {
  std::string backbone, contract = "grid", size = "224";
  int regions = 0;
  std::vector<float> mean{0.485f, 0.456f, 0.406f}, std{0.229f, 0.224f, 0.225f};
  FeatureOptions features;

  // The options' values as FeatureOptions (the checks ran when the command line was parsed).
  FeatureOptions feature_options() const {
    auto options = features;
    options.backbone = backbone;
    options.contract = parse_backbone_contract(contract);
    if (regions > 0) options.regions = regions;
    picture_size_problem(size, options.preprocessing.width, options.preprocessing.height);
    for (std::size_t c = 0; c < 3; ++c) {
      options.preprocessing.mean[c] = mean[c];
      options.preprocessing.std[c] = std[c];
    }
    return options;
  }
};

// Adds --backbone, --contract, --regions, --size, --mean, --std, --max-pixels, --batch-size and
// --decode-threads; returns them, so that a command can tie them to another option.
inline std::vector<CLI::Option*> add_picture_options(CLI::App* sub, PictureOptions& o,
                                                     const std::string& regions_default) {
  // A finite number (and, for `positive`, above 0): nan and inf would make every picture NaN.
  const auto number = [](bool positive) {
    return CLI::Validator(
        [positive](std::string& value) {
          std::istringstream in(value);
          double number = 0;
          const bool ok = (in >> number) && std::isfinite(number) && (!positive || number > 0);
          return ok ? std::string()
                    : std::string("must be a ") + (positive ? "positive" : "finite") + " number, got " + value;
        },
        positive ? "NUMBER > 0" : "NUMBER");
  };
  const auto finite = number(false), positive = number(true);
  const auto size = CLI::Validator(
      [](std::string& value) {
        int width = 0, height = 0;
        return picture_size_problem(value, width, height);
      },
      "N|WxH");
  return {
      sub->add_option("--backbone", o.backbone, "TorchScript module giving region features (docs/features.md)"),
      sub->add_option("--contract", o.contract,
                      "grid: images -> feature map; detector: image -> (boxes, features, scores)")
          ->check(CLI::IsMember({"grid", "detector"}))
          ->capture_default_str(),
      sub->add_option("--regions", o.regions,
                      "a detector's regions per picture (top by score; default: " + regions_default + ")")
          ->check(CLI::Range(1, int(kMaxRegions))),
      sub->add_option("--size", o.size, "input size: N (square) or WxH; pictures are stretched to it")
          ->check(size)
          ->capture_default_str(),
      sub->add_option("--mean", o.mean, "per-channel mean (RGB, after scaling to [0, 1])")
          ->expected(3)
          ->check(finite)
          ->capture_default_str(),
      sub->add_option("--std", o.std, "per-channel standard deviation")
          ->expected(3)
          ->check(positive)
          ->capture_default_str(),
      sub->add_option("--max-pixels", o.features.limits.max_pixels, "skip pictures with more pixels than this")
          ->capture_default_str()
          ->check(kAtLeastOne),
      sub->add_option("--batch-size", o.features.batch_size, "pictures per backbone call")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096)),
      sub->add_option("--decode-threads", o.features.decode_threads, "threads decoding pictures ahead of the backbone")
          ->capture_default_str()
          ->check(CLI::Range(1, 64)),
  };
}

}  // namespace imram::cli
