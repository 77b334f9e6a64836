#include "imram/search/results.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

namespace imram {

namespace {

// Caption `caption` is one of image `image`'s own (never for a gallery without ground truth).
bool own_caption(const GalleryIndex& index, std::int64_t caption, std::int64_t image) {
  return index.captions_per_image() > 0 && caption / index.captions_per_image() == image;
}

}  // namespace

std::vector<std::string> query_warnings(const EncodedQuery& query) {
  std::vector<std::string> warnings;
  if (!query.is_text()) return warnings;
  if (query.replaced_invalid_utf8) warnings.push_back("the query is not valid UTF-8; invalid bytes read as U+FFFD");
  if (std::int64_t(query.unknown_words.size()) == query.token_count)
    warnings.push_back("no word of the query is in the model's vocabulary: the ranking carries no meaning");
  return warnings;
}

SearchAnswer run_search(const Searcher& searcher, const EncodedQuery& query, std::int64_t top, std::int64_t shortlist,
                        double encode_ms, const SearchParams& params) {
  SearchAnswer answer;
  answer.encode_ms = encode_ms;
  answer.shortlist = shortlist;
  answer.hits = searcher.search(query, top, &answer.stats, params);
  return answer;
}

nlohmann::ordered_json search_answer_json(const GalleryIndex& index, const EncodedQuery& query,
                                          std::int64_t query_image, const SearchAnswer& answer) {
  nlohmann::ordered_json out;
  const bool by_text = query.is_text();
  if (by_text) {
    out["query"] = query.text;
    out["unknown_words"] = query.unknown_words;
    const auto warnings = query_warnings(query);
    if (!warnings.empty()) out["warnings"] = warnings;
  } else {
    out["image"] = query_image;
    const auto description = index.image_info(query_image).description;
    if (!description.empty()) out["description"] = description;
  }
  out["shortlist"] = answer.shortlist;
  // An index without its exact store scores fragments decoded from residuals.
  out["exact_scores"] = index.store()->exact();
  out["timings"] = {{"encode_ms", answer.encode_ms},
                    {"stage1_ms", answer.stats.stage1_ms},
                    {"stage2_ms", answer.stats.stage2_ms},
                    {"coded_ms", answer.stats.coded_ms},
                    {"exact_step1_ms", answer.stats.exact_step1_ms},
                    {"scored", answer.stats.scored},
                    {"engine_path", answer.stats.engine_path}};
  auto results = nlohmann::ordered_json::array();
  for (std::size_t rank = 0; rank < answer.hits.size(); ++rank) {
    const auto& hit = answer.hits[rank];
    nlohmann::ordered_json item{{"rank", rank + 1}, {by_text ? "image" : "caption", hit.index}, {"score", hit.score}};
    if (hit.stage1) item["stage1"] = *hit.stage1;
    if (by_text) {
      const auto description = index.image_info(hit.index).description;
      if (!description.empty()) item["description"] = description;
    }
    if (!by_text) {
      item["text"] = index.caption_texts()[std::size_t(hit.index)];
      if (index.captions_per_image() > 0) item["own"] = own_caption(index, hit.index, query_image);
    }
    results.push_back(item);
  }
  out["results"] = results;
  return out;
}

std::string search_answer_text(const GalleryIndex& index, const EncodedQuery& query, std::int64_t query_image,
                               const SearchAnswer& answer, std::int64_t mark) {
  std::ostringstream out;
  const bool by_text = query.is_text();
  if (by_text) {
    out << "query: " << query.text << "\n";
  } else {
    const auto description = index.image_info(query_image).description;
    out << "image " << query_image << (description.empty() ? "" : ": " + description) << "\n";
  }
  if (!index.store()->exact())
    out << "  (scores approximate: the index keeps no exact store, its fragments are decoded from residuals)\n";
  for (std::size_t rank = 0; rank < answer.hits.size(); ++rank) {
    const auto& hit = answer.hits[rank];
    char score[32];
    std::snprintf(score, sizeof score, "%.4f", hit.score);
    const bool own = !by_text && own_caption(index, hit.index, query_image);
    out << "  " << (hit.index == mark || own ? "* " : "  ") << rank + 1 << ". ";
    if (by_text) {
      const auto description = index.image_info(hit.index).description;
      out << "image " << hit.index << "  " << score << (description.empty() ? "" : "  " + description);
    } else {
      out << "caption " << hit.index << "  " << score << "  " << index.caption_texts()[std::size_t(hit.index)];
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace imram
