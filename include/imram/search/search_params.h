#pragma once
// Per-call knobs of an approximate shortlist, as FAISS's SearchParameters: they apply to one
// search and never change the index that others search at the same time. 0: the default.
// LibTorch-free: the server's request parsing (and its fuzz target) carries them.

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace imram {

// The recommended two-stage configuration, the default of every command (docs/search.md#defaults):
// FAISS proposes auto_prefilter(gallery) items, IMRAM's first step alone keeps
// auto_shortlist(gallery) of them, and all K steps order those. Both grow with the gallery: among
// more items, more of them look alike to a pooled embedding and to step 1 alone.
inline constexpr std::int64_t kAutoPrefilter = -1;  // a prefilter that grows with the gallery
inline constexpr std::int64_t kAutoShortlist = -1;  // a shortlist that grows with the gallery
inline constexpr std::int64_t kDefaultPrefilter = kAutoPrefilter;
inline constexpr std::int64_t kDefaultShortlist = kAutoShortlist;

// The automatic prefilter: half the gallery, at least 1,000 and at most 20,000 items. Among
// 100,000 synthetic scenes (200 sampled text queries, docs/search.md), the pooled embedding's top
// 10,000 held exhaustive IMRAM's whole top 10 for 98.5 % of the queries and its top 20,000 for
// 99.5 %; among 8,000, its top 1,600 for 98.5 % and its top 4,000 for all. The cap bounds the
// step-1 pass, whose cost grows with the list (and, per item, with the model's size).
inline std::int64_t auto_prefilter(std::int64_t gallery_items) {
  return std::clamp<std::int64_t>(gallery_items / 2, 1000, 20000);
}

// The automatic shortlist: one item in 300 of the gallery, at least 100 and at most 1,000. For
// the own item's rank to be exhaustive IMRAM's, every item IMRAM ranks above it must survive
// step 1's cut; among 100,000 scenes a cut at 100 kept that for 95.5 % of the queries, at 250
// or more for 99 % (the same queries, the first list of 20,000).
inline std::int64_t auto_shortlist(std::int64_t gallery_items) {
  return std::clamp<std::int64_t>(gallery_items / 300, 100, 1000);
}

// The automatic list of the coded first step (docs/search.md#codes-for-step-1): where the index
// keeps codes, step 1 from the codes ranks the whole first list and keeps this many for exact
// step 1: as many as exact step 1 reads in kExactStep1Values stored values (2,000 images of 36
// regions at d = 1,024: 76-79 ms here, docs/search.md), at least 4 x the shortlist, at most the first list.
// On the demo's model (16 regions, d = 128) that is the whole first list of 20,000 and no coded
// step: among 100,000 images the coded step cost its ranks more than it saved (docs/search.md).
inline constexpr std::int64_t kAutoStep1 = -1;
inline constexpr std::int64_t kDefaultStep1 = kAutoStep1;
inline constexpr double kExactStep1Values = 2000.0 * 36 * 1024;
inline std::int64_t auto_step1(std::int64_t prefilter, std::int64_t shortlist, double values_per_item) {
  const auto affordable = std::int64_t(kExactStep1Values / std::max(1.0, values_per_item));
  return std::min(prefilter, std::max(affordable, 4 * shortlist));
}
inline std::int64_t resolve_step1(std::int64_t step1, std::int64_t prefilter, std::int64_t shortlist,
                                  double values_per_item) {
  return step1 == kAutoStep1 ? auto_step1(prefilter, shortlist, values_per_item) : step1;
}

// `prefilter` and `shortlist` as given, or the automatic ones for a gallery of this size.
inline std::int64_t resolve_prefilter(std::int64_t prefilter, std::int64_t gallery_items) {
  return prefilter == kAutoPrefilter ? auto_prefilter(gallery_items) : prefilter;
}
inline std::int64_t resolve_shortlist(std::int64_t shortlist, std::int64_t gallery_items) {
  return shortlist == kAutoShortlist ? auto_shortlist(gallery_items) : shortlist;
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

// The items all K steps score in a gallery of this size: `shortlist` resolved, at most the gallery.
inline std::int64_t scored_shortlist(std::int64_t shortlist, std::int64_t gallery_items) {
  return std::min(resolve_shortlist(shortlist, gallery_items), gallery_items);
}

// The lists of a search of an index, as `imram search --shortlist --prefilter --step1` give them
// (each automatic unless told).
struct SearchLists {
  std::int64_t shortlist = kDefaultShortlist;
  std::int64_t prefilter = kDefaultPrefilter;
  std::int64_t step1 = kDefaultStep1;
};

struct SearchParams {
  int nprobe = 0;     // inverted-file lists visited per query (IVF indexes; 0: at least 32, more when
                      // the request asks for more than 32 lists hold, faiss_shortlist.h)
  int ef_search = 0;  // candidate list of a graph search (HNSW indexes; default 128)

  // The server batches only searches that ask for the same.
  bool operator==(const SearchParams& other) const { return nprobe == other.nprobe && ef_search == other.ef_search; }
};

}  // namespace imram
