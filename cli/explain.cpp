#include <algorithm>
#include <cstdio>
#include <iostream>

#include "command.h"
#include "imram/data/precomp_dataset.h"
#include "imram/engine/explain.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"

namespace {

std::string fragment_name(const imram::Explanation& explanation, const std::string& kind, std::size_t index) {
  if (kind == "regions") return "r" + std::to_string(index);
  const auto& token = explanation.tokens[index];
  return token.known ? token.text : token.text + "(unknown)";
}

void print_explanation(const imram::Explanation& explanation) {
  std::cout << "tokens:";
  for (const auto& token : explanation.tokens) std::cout << " " << token.text << (token.known ? "" : "(unknown)");
  std::cout << "\n";
  char line[64];
  for (const auto& direction : explanation.directions) {
    std::snprintf(line, sizeof line, "%.6f", direction.score);
    std::cout << direction.name << "-IMRAM (" << direction.query << " attend over " << direction.context << "): score "
              << line << "\n";
    for (std::size_t k = 0; k < direction.steps.size(); ++k) {
      const auto& step = direction.steps[k];
      std::snprintf(line, sizeof line, "%.6f", step.similarity);
      std::cout << "  step " << k + 1 << ": similarity " << line << "\n";
      for (std::size_t q = 0; q < step.attention.size(); ++q) {
        const auto& row = step.attention[q];
        const auto best = std::size_t(std::max_element(row.begin(), row.end()) - row.begin());
        std::snprintf(line, sizeof line, "%.3f", row[best]);
        std::cout << "    " << fragment_name(explanation, direction.query, q) << " -> "
                  << fragment_name(explanation, direction.context, best) << " (" << line << ")";
        if (!step.gate_mean.empty()) {
          std::snprintf(line, sizeof line, "%.3f", step.gate_mean[q]);
          std::cout << "  gate " << line;
        }
        std::cout << "\n";
      }
    }
  }
  std::snprintf(line, sizeof line, "%.6f", explanation.score);
  std::cout << "score " << line << "\n";
}

}  // namespace

void imram::cli::add_explain_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string model, data, split = "test", text;
    std::int64_t image = -1, caption = -1;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = root.add_subcommand("explain", "show the attention, step similarities and gates behind one pair's score");
  sub->add_option("--model", o->model, "model directory")->required();
  sub->add_option("--data", o->data, "dataset directory")->required();
  sub->add_option("--split", o->split, "split of the image (and caption)")
      ->check(imram::cli::kSplitName)
      ->capture_default_str();
  sub->add_option("--image", o->image, "image index")->required();
  auto* caption = sub->add_option("--caption", o->caption, "caption index of the split");
  auto* text = sub->add_option("--text", o->text, "caption text");
  caption->excludes(text);
  sub->add_flag("--json", o->json, "print one JSON line");
  sub->callback([&invocation, o, sub] {
    invocation.brief = true;
    invocation.run = [o, sub, device = invocation.globals.device] {
      if (!sub->count("--caption") && !sub->count("--text"))
        throw imram::Error("explain: give --caption J or --text TEXT");
      auto model = imram::load_model(o->model, imram::parse_device(device));
      const auto split = imram::PrecompSplit::open(o->data, o->split);
      split.require_feature_dim(model.config().img_dim);  // explain_pair reads img_dim floats a region
      if (o->image < 0 || o->image >= split.num_images())
        throw imram::Error("--image " + std::to_string(o->image) + ": out of range, the " + split.name() +
                           " split has " + std::to_string(split.num_images()) + " images");
      if (sub->count("--caption") && (o->caption < 0 || o->caption >= split.num_captions()))
        throw imram::Error("--caption " + std::to_string(o->caption) + ": out of range, the " + split.name() +
                           " split has " + std::to_string(split.num_captions()) + " captions");
      const auto caption_text = sub->count("--caption") ? split.captions()[std::size_t(o->caption)] : o->text;
      const auto explanation =
          imram::explain_pair(model, split.image_features(o->image), split.num_regions(), caption_text);
      if (o->json) {
        auto out = imram::explanation_json(explanation);
        out["image"] = o->image;
        out["caption"] = caption_text;
        std::cout << out.dump() << "\n";
      } else {
        print_explanation(explanation);
      }
      return 0;
    };
  });
}
