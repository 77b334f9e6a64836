#include "imram/search/results.h"

#include <nlohmann/json.hpp>

namespace imram {

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
    auto warnings = nlohmann::ordered_json::array();
    if (query.replaced_invalid_utf8) warnings.push_back("the query is not valid UTF-8; invalid bytes read as U+FFFD");
    if (std::int64_t(query.unknown_words.size()) == query.token_count)
      warnings.push_back("no word of the query is in the model's vocabulary: the ranking carries no meaning");
    if (!warnings.empty()) out["warnings"] = warnings;
  } else {
    out["image"] = query_image;
    if (!index.scenes().empty()) out["scene"] = describe(index.scenes()[std::size_t(query_image)]);
  }
  out["shortlist"] = answer.shortlist;
  out["timings"] = {{"encode_ms", answer.encode_ms}, {"stage1_ms", answer.stats.stage1_ms},
                    {"stage2_ms", answer.stats.stage2_ms}, {"scored", answer.stats.scored},
                    {"engine_path", answer.stats.engine_path}};
  auto results = nlohmann::ordered_json::array();
  for (std::size_t rank = 0; rank < answer.hits.size(); ++rank) {
    const auto& hit = answer.hits[rank];
    nlohmann::ordered_json item{{"rank", rank + 1}, {by_text ? "image" : "caption", hit.index}, {"score", hit.score}};
    if (hit.stage1) item["stage1"] = *hit.stage1;
    if (by_text && !index.scenes().empty()) item["scene"] = describe(index.scenes()[std::size_t(hit.index)]);
    if (!by_text) {
      item["text"] = index.caption_texts()[std::size_t(hit.index)];
      if (index.captions_per_image() > 0) item["own"] = hit.index / index.captions_per_image() == query_image;
    }
    results.push_back(item);
  }
  out["results"] = results;
  return out;
}

}  // namespace imram
