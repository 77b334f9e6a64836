#pragma once
// Search as FAISS shapes it: one small interface, `search_many(queries, k)`, and implementations
// that compose. A shortlist (FAISS over the global embeddings) proposes candidates cheaply; the
// refine stage orders any candidates by the exact IMRAM score (search/rerank.h), and exhaustive
// search is that refine stage over every gallery item. docs/index.md describes the two-stage design.
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imram/engine/query.h"
#include "imram/model/imram.h"
#include "imram/search/search_params.h"

namespace imram {

struct Hit {
  std::int64_t index = 0;        // image index (text query) or caption index (image query)
  double score = 0;              // this searcher's score (IMRAM's S for exhaustive and re-rank)
  std::optional<double> stage1;  // the shortlist's score, when a shortlist proposed the item
};

struct SearchStats {
  double stage1_ms = 0;       // the shortlist
  double stage2_ms = 0;       // IMRAM scoring (the whole gallery, or the shortlist)
  double coded_ms = 0;        // of stage2_ms: the coded first step (search/fragment_codes.h)
  double exact_step1_ms = 0;  // of stage2_ms: exact step 1 of the cascade's middle list
  std::int64_t scored = 0;    // (query, item) pairs IMRAM scored
  std::string engine_path;    // the engine path that scored them (engine/matching.h)
};

class Searcher {
 public:
  virtual ~Searcher() = default;
  virtual GallerySide side() const = 0;
  virtual std::int64_t size() const = 0;  // gallery items
  // The primary form, FAISS's: n queries of one side; for each, the min(k, size()) best items,
  // best first, exactly as if it had been asked alone. `stats` accumulates timings.
  virtual std::vector<std::vector<Hit>> search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                                    SearchStats* stats = nullptr,
                                                    const SearchParams& params = {}) const = 0;
  // One query.
  std::vector<Hit> search(const EncodedQuery& query, std::int64_t k, SearchStats* stats = nullptr,
                          const SearchParams& params = {}) const {
    return search_many({query}, k, stats, params).front();
  }
};

}  // namespace imram
