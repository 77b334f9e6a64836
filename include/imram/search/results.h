#pragma once
// The answer to one search for people (`imram search`) and as JSON, the same for
// `imram search --json` and `imram serve`.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "imram/search/index_dir.h"
#include "imram/search/searcher.h"

namespace imram {

struct SearchAnswer {
  std::vector<Hit> hits;
  SearchStats stats;
  double encode_ms = 0;        // the query's encoding
  std::int64_t shortlist = 0;  // N of a two-stage search; 0: exhaustive
};

// {"query": TEXT | "image": I, "unknown_words": [...], "warnings"?: [...], "shortlist": N, "timings": {...},
//  "results": [{"rank", "image" | "caption", "score", "stage1"?, "text"?, "own"?, "description"?}]}
// `query_image` is the image of an image query (-1 for text).
nlohmann::ordered_json search_answer_json(const GalleryIndex& index, const EncodedQuery& query,
                                          std::int64_t query_image, const SearchAnswer& answer);

// One line per result ("  * 1. image 7  0.8123  large red circle (top left)"); a star marks the
// result `mark` and, for an image query, its own captions. Warnings are not part of it.
std::string search_answer_text(const GalleryIndex& index, const EncodedQuery& query, std::int64_t query_image,
                               const SearchAnswer& answer, std::int64_t mark = -1);

// What a person should know about a text query's ranking (invalid UTF-8, no known word).
std::vector<std::string> query_warnings(const EncodedQuery& query);

// Searches an encoded query with `searcher`; `encode_ms` is the caller's time for encoding it.
SearchAnswer run_search(const Searcher& searcher, const EncodedQuery& query, std::int64_t top, std::int64_t shortlist,
                        double encode_ms, const SearchParams& params = {});

}  // namespace imram
