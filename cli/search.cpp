#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/search/gallery.h"
#include "imram/search/results.h"
#include "imram/search/search_params.h"
#include "imram/util/log.h"
#include "imram/util/stopwatch.h"
#include "search_options.h"

void imram::cli::add_search_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string index, model, data, split = "test", query, cache = imram::default_cache_dir();
    std::int64_t image = -1, top = 5, mark = -1, shortlist = imram::kDefaultShortlist,
                 prefilter = imram::kDefaultPrefilter, step1 = imram::kDefaultStep1;
    std::uint64_t cache_limit_mb = imram::kDefaultGalleryCacheBytes >> 20;
    imram::SearchParams params;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = root.add_subcommand("search", "rank images for a text query, or captions for an image");
  auto* index = sub->add_option("--index", o->index, "index directory (imram index build): two-stage search");
  sub->add_option("--model", o->model,
                  "model directory (with --data: search a split; with --index: check it is the index's)");
  sub->add_option("--data", o->data, "dataset directory: search one of its splits, encoded on first use")
      ->excludes(index);
  sub->add_option("--split", o->split, "split to search (with --data)")
      ->check(imram::cli::kSplitName)
      ->capture_default_str();
  auto* query = sub->add_option("--query", o->query, "text query: rank the images");
  auto* image = sub->add_option("--image", o->image, "image index: rank the captions");
  query->excludes(image);
  sub->add_option("--top", o->top, "results to show")->capture_default_str()->check(CLI::Range(1, 100000));
  imram::cli::add_shortlist_option(
      sub, o->shortlist,
      "candidates from the FAISS shortlist re-ranked by IMRAM (0: score the whole gallery; "
      "always 0 with --data)");
  imram::cli::add_prefilter_option(
      sub, o->prefilter,
      "FAISS proposes this many, IMRAM's first step alone keeps --shortlist of them for the full "
      "K steps");
  imram::cli::add_step1_option(sub, o->step1);
  imram::cli::add_search_params_options(sub, o->params);
  sub->add_option("--mark", o->mark, "flag this result index as the expected one");
  sub->add_option("--cache", o->cache, "directory of encoded galleries for --data (empty: none)")
      ->capture_default_str();
  sub->add_option("--cache-limit", o->cache_limit_mb, "MB the cache may hold; least recently used galleries go first")
      ->capture_default_str()
      ->check(imram::cli::kCacheLimitRange);
  sub->add_flag("--json", o->json, "print one JSON line");
  sub->callback([&invocation, o, sub] {
    invocation.brief = true;
    invocation.run = [o, sub, device = invocation.globals.device] {
      const bool by_text = sub->count("--query") > 0;
      if (!by_text && !sub->count("--image")) throw imram::Error("search: give --query TEXT or --image N");
      std::shared_ptr<const imram::GalleryIndex> index;
      std::int64_t shortlist = o->shortlist;
      if (!o->index.empty()) {
        index = imram::GalleryIndex::open(o->index, imram::parse_device(device), o->model);
      } else {
        if (o->model.empty() || o->data.empty())
          throw imram::Error("search: give --index INDEX, or --model M and --data DIR");
        if (!sub->count("--shortlist")) shortlist = 0;
        auto model = imram::load_model(o->model, imram::parse_device(device));
        const auto split = imram::PrecompSplit::open(o->data, o->split);
        index = imram::Gallery(model, split, o->model, o->cache, /*show_progress=*/!o->json, o->cache_limit_mb << 20)
                    .shared_index();
      }
      const auto side = by_text ? imram::GallerySide::Images : imram::GallerySide::Captions;
      const auto gallery_size = by_text ? index->num_images() : index->num_captions();
      const auto lists = index->resolved_lists(side, {shortlist, o->prefilter, o->step1});
      if (sub->count("--shortlist") && shortlist > gallery_size)
        std::cerr << "imram: note: --shortlist " << shortlist << " is more than the gallery's " << gallery_size
                  << " items; scoring all of them\n";
      const auto searcher = index->searcher(side, lists);
      const imram::Stopwatch encoding;
      const auto encoded = by_text ? index->text_query(o->query) : index->image_query(o->image);
      const auto answer =
          imram::run_search(*searcher, encoded, o->top, lists.shortlist, encoding.milliseconds(), o->params);
      if (o->json) {
        std::cout << imram::search_answer_json(*index, encoded, by_text ? -1 : o->image, answer)
                         .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                  << "\n";
        return 0;
      }
      for (const auto& warning : imram::query_warnings(encoded)) imram::log_warning(warning);
      std::cout << imram::search_answer_text(*index, encoded, by_text ? -1 : o->image, answer, o->mark);
      return 0;
    };
  });
}
