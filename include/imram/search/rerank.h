#pragma once
// The searchers that score with IMRAM: over the whole gallery, or over the candidates of any
// other searcher (a shortlist), each candidate scored exactly by the fast engine.
#include <memory>

#include "imram/engine/scorer.h"
#include "imram/search/item_store.h"
#include "imram/search/searcher.h"

namespace imram {

// IMRAM's S(image, caption) of each query (all of one side) against the gallery items `ids`
// (engine/scorer.h): one row per query, in the order of `ids`. Items are read from the store in
// chunks, so memory stays bounded; the queries go into each engine call together.
std::vector<std::vector<double>> score_queries(const ImramModelImpl& model, const ItemStore& store,
                                               const std::vector<EncodedQuery>& queries,
                                               const std::vector<std::int64_t>& ids);

class ExhaustiveSearcher final : public Searcher {
 public:
  ExhaustiveSearcher(ImramModel model, std::shared_ptr<const ItemStore> store, GallerySide side);
  GallerySide side() const override { return side_; }
  std::int64_t size() const override;
  std::vector<Hit> search(const EncodedQuery& query, std::int64_t k, SearchStats* stats) const override;
  // One engine call per gallery chunk for all the queries: the many-by-many engine path, several
  // times the pairs per second of one query at a time (bench search --batch).
  std::vector<std::vector<Hit>> search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                            SearchStats* stats) const override;

 private:
  ImramModel model_;
  std::shared_ptr<const ItemStore> store_;
  GallerySide side_;
};

// Asks `shortlist` for `candidates` items and orders them by IMRAM's score.
class RerankSearcher final : public Searcher {
 public:
  RerankSearcher(std::shared_ptr<const Searcher> shortlist, std::int64_t candidates, ImramModel model,
                 std::shared_ptr<const ItemStore> store);
  GallerySide side() const override { return shortlist_->side(); }
  std::int64_t size() const override { return shortlist_->size(); }
  std::int64_t candidates() const { return candidates_; }
  std::vector<Hit> search(const EncodedQuery& query, std::int64_t k, SearchStats* stats) const override;

 private:
  std::shared_ptr<const Searcher> shortlist_;
  std::int64_t candidates_;
  ImramModel model_;
  std::shared_ptr<const ItemStore> store_;
};

// The k best of `scores` (index = position), best first; ties by lower index.
std::vector<Hit> top_hits(const std::vector<double>& scores, std::int64_t k);

}  // namespace imram
