#pragma once
// Per-call knobs of an approximate shortlist, as FAISS's SearchParameters: they apply to one
// search and never change the index that others search at the same time. 0: the default.
// LibTorch-free: the server's request parsing (and its fuzz target) carries them.

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace imram {

// The recommended two-stage configuration, the default of every command (docs/search.md#defaults):
// FAISS proposes auto_prefilter items, step 1 from the codes keeps auto_step1 of them for exact
// step 1 (where the index keeps codes), exact step 1 keeps auto_shortlist, and all K steps order
// those. The lists grow with the gallery: among more items, more of them look alike to a pooled
// embedding and to step 1 alone. They shrink as the items grow: what a stage costs per candidate
// is about the values it reads, its fragments times d, 18-fold more for a model trained on real
// data (36 regions, d = 1,024) than for the demo's (16 regions, d = 128). So each list is bounded
// both by the gallery, as measured on the demo's model, and by a budget of values, as measured on
// a trained model with 36 regions (docs/search.md#lists-for-large-models); the demo's model
// meets only the gallery's bounds of the first and last lists.
inline constexpr std::int64_t kAutoPrefilter = -1;  // a prefilter that grows with the gallery
inline constexpr std::int64_t kAutoShortlist = -1;  // a shortlist that grows with the gallery
inline constexpr std::int64_t kDefaultPrefilter = kAutoPrefilter;
inline constexpr std::int64_t kDefaultShortlist = kAutoShortlist;

// The values of one item of a model trained on real data; the budgets below count in such items.
inline constexpr double kLargeModelItemValues = 36.0 * 1024;
inline std::int64_t items_within(double budget_items, double values_per_item) {
  return std::int64_t(budget_items * kLargeModelItemValues / std::max(1.0, values_per_item));
}

// The automatic prefilter: half the gallery, at least 1,000 and at most 20,000 items. Among
// 100,000 synthetic scenes (200 sampled text queries, docs/search.md), the pooled embedding's top
// 10,000 held exhaustive IMRAM's whole top 10 for 98.5 % of the queries and its top 20,000 for
// 99.5 %; among 8,000, its top 1,600 for 98.5 % and its top 4,000 for all. For large items, at
// most 8,000 items of 36 x 1,024 values (the coded step's pass: about 2.7 us each at d = 1,024).
inline constexpr double kFirstListLargeItems = 8000;
inline std::int64_t auto_prefilter(std::int64_t gallery_items, double values_per_item) {
  const auto by_gallery = std::clamp<std::int64_t>(gallery_items / 2, 1000, 20000);
  return std::min(by_gallery, std::max<std::int64_t>(items_within(kFirstListLargeItems, values_per_item), 1000));
}

// The automatic shortlist: one item in 300 of the gallery, at least 100 and at most 1,000. For
// the own item's rank to be exhaustive IMRAM's, every item IMRAM ranks above it must survive
// step 1's cut; among 100,000 scenes a cut at 100 kept that for 95.5 % of the queries, at 250
// or more for 99 % (the demo's model, the first list of 20,000). For large items, at most 80 items
// of 36 x 1,024 values (all K steps: about 1.2 ms each at d = 1,024), never under kMinShortlist:
// on a trained model of 36 regions at d = 512, a cut at 80 kept exhaustive IMRAM's top 10 for
// 98.5 % of 200 text queries and one at 40 for 83 % (docs/search.md#lists-for-large-models).
inline constexpr double kFinalLargeItems = 80;
inline constexpr std::int64_t kMinShortlist = 20;
inline std::int64_t auto_shortlist(std::int64_t gallery_items, double values_per_item) {
  const auto by_gallery = std::clamp<std::int64_t>(gallery_items / 300, 100, 1000);
  return std::min(by_gallery, std::max(items_within(kFinalLargeItems, values_per_item), kMinShortlist));
}

// The automatic list of the coded first step (docs/search.md#codes-for-step-1): where the index
// keeps codes, step 1 from the codes ranks the whole first list and keeps this many for exact
// step 1: 400 items of 36 x 1,024 values (about 38 us each at d = 1,024), at least 4 x the
// shortlist, at most the first list. On the demo's model that is 7,200 items, fewer than the
// first list only where the gallery passes 14,400 items; among 100,000 images the coded step
// keeping 2,000 of 20,000 lost nothing against exact step 1 (docs/search.md).
inline constexpr std::int64_t kAutoStep1 = -1;
inline constexpr std::int64_t kDefaultStep1 = kAutoStep1;
inline constexpr double kExactStep1LargeItems = 400;
inline std::int64_t auto_step1(std::int64_t prefilter, std::int64_t shortlist, double values_per_item) {
  return std::min(prefilter, std::max(items_within(kExactStep1LargeItems, values_per_item), 4 * shortlist));
}
inline std::int64_t resolve_step1(std::int64_t step1, std::int64_t prefilter, std::int64_t shortlist,
                                  double values_per_item) {
  return step1 == kAutoStep1 ? auto_step1(prefilter, shortlist, values_per_item) : step1;
}

// `prefilter` and `shortlist` as given, or the automatic ones for a gallery of this size.
inline std::int64_t resolve_prefilter(std::int64_t prefilter, std::int64_t gallery_items, double values_per_item) {
  return prefilter == kAutoPrefilter ? auto_prefilter(gallery_items, values_per_item) : prefilter;
}
inline std::int64_t resolve_shortlist(std::int64_t shortlist, std::int64_t gallery_items, double values_per_item) {
  return shortlist == kAutoShortlist ? auto_shortlist(gallery_items, values_per_item) : shortlist;
}
// A shard's part of a list meant for the whole gallery (docs/index.md#shards): a shard of
// `shard_items` of the gallery's `gallery_items` holds, among the list's items, about its share
// of them when its range of the gallery is as varied as the whole (a hypergeometric count): the
// mean plus four standard deviations, at most the list. The shards' parts add up to more than
// the list, and a shard searches about its share of the work, so that S shards searched at once
// answer about S times sooner than one index.
inline std::int64_t shard_list(std::int64_t list, std::int64_t shard_items, std::int64_t gallery_items) {
  if (list <= 0 || shard_items >= gallery_items) return list;
  const double share = double(shard_items) / double(gallery_items), mean = double(list) * share;
  return std::min(list, std::int64_t(std::ceil(mean + 4 * std::sqrt(mean * (1 - share)))));
}

// The lists of a search of an index, as `imram search --shortlist --prefilter --step1` give them
// (each automatic unless told).
struct SearchLists {
  std::int64_t shortlist = kDefaultShortlist;
  std::int64_t prefilter = kDefaultPrefilter;
  std::int64_t step1 = kDefaultStep1;
};

// The lists as a search of a gallery of `gallery_items` runs them, each a number of items of the
// whole gallery: the shortlist at most the gallery (0: exhaustive search, no other list), the
// first list 0 where it is no longer than the shortlist (FAISS's list is then the shortlist),
// `step1` 0 where no coded step runs (`coded`: the side keeps codes; a step that would keep the
// whole first list is none). A searcher given these runs as with the lists they came from.
inline SearchLists resolve_lists(const SearchLists& lists, std::int64_t gallery_items, double values_per_item,
                                 bool coded) {
  SearchLists resolved{0, 0, 0};
  resolved.shortlist = std::min(resolve_shortlist(lists.shortlist, gallery_items, values_per_item), gallery_items);
  if (resolved.shortlist <= 0) return resolved;
  const auto prefilter = std::min(resolve_prefilter(lists.prefilter, gallery_items, values_per_item), gallery_items);
  if (prefilter <= resolved.shortlist) return resolved;
  resolved.prefilter = prefilter;
  const auto step1 = resolve_step1(lists.step1, prefilter, resolved.shortlist, values_per_item);
  if (coded && step1 > 0 && step1 < prefilter) resolved.step1 = step1;
  return resolved;
}

struct SearchParams {
  int nprobe = 0;     // inverted-file lists visited per query (IVF indexes; 0: at least 32, more when
                      // the request asks for more than 32 lists hold, faiss_shortlist.h)
  int ef_search = 0;  // candidate list of a graph search (HNSW indexes; default 128)

  // The server batches only searches that ask for the same.
  bool operator==(const SearchParams& other) const { return nprobe == other.nprobe && ef_search == other.ef_search; }
};

}  // namespace imram
