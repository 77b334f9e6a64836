#pragma once
// Per-call knobs of an approximate shortlist, as FAISS's SearchParameters: they apply to one
// search and never change the index that others search at the same time. 0: the default.
// LibTorch-free: the server's request parsing (and its fuzz target) carries them.

#include <algorithm>
#include <cstdint>

namespace imram {

// The recommended two-stage configuration, the default of every command (docs/search.md#defaults):
// FAISS proposes auto_prefilter(gallery) items, IMRAM's first step alone keeps kDefaultShortlist
// of them, and all K steps order those.
inline constexpr std::int64_t kDefaultShortlist = 100;
inline constexpr std::int64_t kAutoPrefilter = -1;  // a prefilter that grows with the gallery
inline constexpr std::int64_t kDefaultPrefilter = kAutoPrefilter;

// The automatic prefilter: 10 % of the gallery, at least 1,000 and at most 10,000 items. Among
// 100,000 synthetic scenes, with a pooled embedding's top 1,000 scored by step 1 the final 100
// held exhaustive IMRAM's whole top 10 for 58.5 % of 200 sampled text queries; with its top
// 5,000 for 93.5 %, its top 10,000 for 98.5 % (docs/search.md). The cap bounds the step-1 pass,
// whose cost grows with the list (and, per item, with the model's size).
inline std::int64_t auto_prefilter(std::int64_t gallery_items) {
  return std::clamp<std::int64_t>(gallery_items / 10, 1000, 10000);
}

// `prefilter` as given, or the automatic one for a gallery of this size.
inline std::int64_t resolve_prefilter(std::int64_t prefilter, std::int64_t gallery_items) {
  return prefilter == kAutoPrefilter ? auto_prefilter(gallery_items) : prefilter;
}

struct SearchParams {
  int nprobe = 0;     // inverted-file lists visited per query (IVF indexes; default 32)
  int ef_search = 0;  // candidate list of a graph search (HNSW indexes; default 128)

  // The server batches only searches that ask for the same.
  bool operator==(const SearchParams& other) const { return nprobe == other.nprobe && ef_search == other.ef_search; }
};

}  // namespace imram
