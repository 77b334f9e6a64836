#pragma once
// Per-call knobs of an approximate shortlist, as FAISS's SearchParameters: they apply to one
// search and never change the index that others search at the same time. 0: the default.
// LibTorch-free: the server's request parsing (and its fuzz target) carries them.

#include <cstdint>

namespace imram {

// The recommended two-stage configuration, the default of every command (docs/search.md#defaults):
// FAISS proposes kDefaultPrefilter items, IMRAM's first step alone keeps kDefaultShortlist of
// them, and all K steps order those.
inline constexpr std::int64_t kDefaultShortlist = 100;
inline constexpr std::int64_t kDefaultPrefilter = 1000;

struct SearchParams {
  int nprobe = 0;     // inverted-file lists visited per query (IVF indexes; default 32)
  int ef_search = 0;  // candidate list of a graph search (HNSW indexes; default 128)

  // The server batches only searches that ask for the same.
  bool operator==(const SearchParams& other) const { return nprobe == other.nprobe && ef_search == other.ef_search; }
};

}  // namespace imram
