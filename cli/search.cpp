#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "imram/data/captions.h"
#include "imram/data/tokenizer.h"
#include "imram/data/synthetic.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/search/gallery.h"

namespace {
// A query is ranked whatever it holds; a user should learn when that ranking means nothing.
void warn_about_query(std::string& query, const imram::Vocabulary& vocabulary) {
  bool replaced = false;
  query = imram::valid_utf8(query, &replaced);
  if (replaced) std::cerr << "imram: warning: --query is not valid UTF-8; invalid bytes read as U+FFFD\n";
  const auto tokens = imram::tokenize(query);
  if (!tokens.empty() && std::none_of(tokens.begin(), tokens.end(),
                                      [&](const std::string& token) { return vocabulary.contains(token); }))
    std::cerr << "imram: warning: no word of --query is in the model's vocabulary; the ranking "
                 "says nothing about the query\n";
}
}  // namespace

IMRAM_COMMAND {
  struct Options {
    std::string model, data, split = "test", query, cache = imram::default_cache_dir();
    std::int64_t image = -1, top = 5, mark = -1;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = root.add_subcommand("search", "rank a split's images for a text query, or its captions for an image");
  sub->add_option("--model", o->model, "model directory")->required();
  sub->add_option("--data", o->data, "dataset directory")->required();
  sub->add_option("--split", o->split, "split to search")->capture_default_str();
  auto* query = sub->add_option("--query", o->query, "text query: rank the images");
  auto* image = sub->add_option("--image", o->image, "image index: rank the captions");
  query->excludes(image);
  sub->add_option("--top", o->top, "results to show")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--mark", o->mark, "flag this result index as the expected one");
  sub->add_option("--cache", o->cache, "directory of encoded galleries (empty: no cache)")->capture_default_str();
  sub->add_flag("--json", o->json, "print one JSON line");
  sub->callback([&invocation, o, sub] {
    invocation.run = [o, sub, device = invocation.globals.device] {
      const bool by_text = sub->count("--query") > 0;
      if (!by_text && !sub->count("--image")) throw imram::Error("search: give --query TEXT or --image N");
      auto model = imram::load_model(o->model, imram::parse_device(device));
      const auto split = imram::PrecompSplit::open(o->data, o->split);
      std::vector<imram::Scene> scenes;
      if (std::filesystem::exists(imram::scenes_path(o->data, o->split))) scenes = imram::read_scenes(o->data, o->split);
      if (!scenes.empty() && std::int64_t(scenes.size()) != split.num_images())
        throw imram::Error(imram::scenes_path(o->data, o->split) + ": " + std::to_string(scenes.size()) +
                           " scenes for the " + std::to_string(split.num_images()) + " images of " +
                           split.features_path());
      if (by_text) warn_about_query(o->query, *model.vocabulary);
      const imram::Gallery gallery(model, split, o->model, o->cache);
      const auto hits = by_text ? gallery.search_images(o->query, o->top) : gallery.search_captions(o->image, o->top);
      nlohmann::ordered_json results = nlohmann::ordered_json::array();
      for (std::size_t rank = 0; rank < hits.size(); ++rank) {
        const auto& hit = hits[rank];
        nlohmann::ordered_json item{{"rank", rank + 1}, {by_text ? "image" : "caption", hit.index}, {"score", hit.score}};
        if (by_text && !scenes.empty()) item["scene"] = imram::describe(scenes[std::size_t(hit.index)]);
        if (!by_text) {
          item["text"] = split.captions()[std::size_t(hit.index)];
          item["own"] = split.image_of_caption(hit.index) == o->image;
        }
        if (o->mark >= 0) item["marked"] = hit.index == o->mark;
        results.push_back(item);
      }
      if (o->json) {
        nlohmann::ordered_json out;
        if (by_text) out["query"] = o->query; else out["image"] = o->image;
        out["results"] = results;
        std::cout << out.dump() << "\n";
        return 0;
      }
      if (by_text) std::cout << "query: " << o->query << "\n";
      else {
        std::cout << "image " << o->image;
        if (!scenes.empty()) std::cout << ": " << imram::describe(scenes[std::size_t(o->image)]);
        std::cout << "\n";
      }
      for (const auto& item : results) {
        char score[32];
        std::snprintf(score, sizeof score, "%.4f", item["score"].get<double>());
        const bool marked = (item.contains("marked") && item["marked"].get<bool>()) ||
                            (item.contains("own") && item["own"].get<bool>());
        std::cout << "  " << (marked ? "* " : "  ") << item["rank"].get<int>() << ". ";
        if (by_text) {
          std::cout << "image " << item["image"].get<std::int64_t>() << "  " << score;
          if (item.contains("scene")) std::cout << "  " << item["scene"].get<std::string>();
        } else {
          std::cout << "caption " << item["caption"].get<std::int64_t>() << "  " << score << "  "
                    << item["text"].get<std::string>();
        }
        std::cout << "\n";
      }
      return 0;
    };
  });
}
