#pragma once
// The exact stage of search: IMRAM's score of queries against gallery items, each item scored
// by the fast engine (engine/scorer.h). The refine stage orders any candidates; exhaustive
// search is the refine stage over every item; a re-rank searcher refines another searcher's
// shortlist.
#include <memory>

#include "imram/engine/scorer.h"
#include "imram/search/fragment_codes.h"
#include "imram/search/item_store.h"
#include "imram/search/searcher.h"

namespace imram {

// The refine stage. Candidates are scored in the store's order (ascending ids) whatever order
// they come in, through one engine call per chunk of the store: an item's score depends on the
// set of candidates, never on how a shortlist listed them, so a shortlist that covers the
// gallery gives exhaustive search's scores bit for bit.
class ImramRefiner {
 public:
  // steps > 0: only the first `steps` of the model's K steps (a cheaper, exact part of the score).
  ImramRefiner(ImramModel model, std::shared_ptr<const ItemStore> store, GallerySide side, int steps = 0);
  GallerySide side() const { return side_; }
  std::int64_t size() const;
  // For each query (all of this side), the k best of `ids` by IMRAM's score, best first (ties:
  // the lower id); `stage1` of the hits is left empty.
  std::vector<std::vector<Hit>> refine(const std::vector<EncodedQuery>& queries, std::vector<std::int64_t> ids,
                                       std::int64_t k, SearchStats* stats) const;

 private:
  ImramModel model_;
  std::shared_ptr<const ItemStore> store_;
  GallerySide side_;
  int steps_;
};

// Every gallery item, scored exactly: the refine stage over all ids. Several queries go into
// each engine call together (the many-by-many path, bench search --batch).
class ExhaustiveSearcher final : public Searcher {
 public:
  ExhaustiveSearcher(ImramModel model, std::shared_ptr<const ItemStore> store, GallerySide side);
  GallerySide side() const override { return refiner_.side(); }
  std::int64_t size() const override { return refiner_.size(); }
  std::vector<std::vector<Hit>> search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                            SearchStats* stats, const SearchParams& params) const override;

 private:
  ImramRefiner refiner_;
};

// Asks `shortlist` for `candidates` items per query (at least k, at most the gallery;
// kAutoShortlist: auto_shortlist of the gallery and its items' size) and refines them; hits carry the shortlist's score as stage1. With a prefilter of P > candidates,
// the shortlist gives P items, IMRAM's first step alone (exact and cheap: no memory update)
// keeps the best `candidates` of them, and those get the full K steps: the final scores are
// IMRAM's own.
//
// With `coded` (the store's codes, search/fragment_codes.h) and a first list longer than `step1`,
// step 1 from the codes ranks the whole first list and keeps `step1` items for exact step 1
// (kAutoStep1: auto_step1; 0: no coded step).
//
// A shard of a larger gallery (`gallery_items` above its own size): the lists are resolved for
// the whole gallery, and the shard searches its part of each (shard_list).
class RerankSearcher final : public Searcher {
 public:
  RerankSearcher(std::shared_ptr<const Searcher> shortlist, std::int64_t candidates, ImramModel model,
                 std::shared_ptr<const ItemStore> store, std::int64_t prefilter = 0,
                 std::shared_ptr<const CodedFirstStep> coded = nullptr, std::int64_t step1 = kAutoStep1,
                 std::int64_t gallery_items = 0);
  GallerySide side() const override { return shortlist_->side(); }
  std::int64_t size() const override { return shortlist_->size(); }
  std::int64_t candidates() const { return candidates_; }
  std::int64_t prefilter() const { return prefilter_; }
  // Items that exact step 1 scores after the coded step; 0 without one.
  std::int64_t step1() const { return coded_ ? step1_ : 0; }
  std::vector<std::vector<Hit>> search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                            SearchStats* stats, const SearchParams& params) const override;

 private:
  std::shared_ptr<const Searcher> shortlist_;
  std::int64_t candidates_ = 0, prefilter_ = 0, step1_ = 0;
  ImramRefiner refiner_, first_step_;
  std::shared_ptr<const CodedFirstStep> coded_;
};

// Throws for a query of the other side ("this searcher ranks images: give a text query").
void check_query_side(const EncodedQuery& query, GallerySide side);

// The k best of `scores` (index = position), best first; ties by lower index.
std::vector<Hit> top_hits(const std::vector<double>& scores, std::int64_t k);

}  // namespace imram
