#pragma once
// `imram bench search`: a random gallery indexed end to end (encoding, store, FAISS), then text
// queries timed through both stages, next to exhaustive IMRAM over the same gallery for a few of
// the same queries (same run, same machine).
#include <cstdint>
#include <string>

#include "imram/model/config.h"
#include "imram/search/search_params.h"

namespace imram {

struct SearchBenchOptions {
  ModelConfig model;  // mode, steps, embed_size; the rest set by the bench
  std::int64_t images = 1000;
  std::int64_t regions = 36;
  std::int64_t feature_dim = 2048;
  std::int64_t captions = 1000;  // stored captions (the image -> text side)
  // The lists of the default search (search/search_params.h), what users get: auto (-1) or a number.
  std::int64_t shortlist = kAutoShortlist;
  std::int64_t prefilter = kAutoPrefilter;  // > shortlist: a cascade (step 1 keeps `shortlist` of this many)
  std::int64_t step1 = kAutoStep1;          // the coded first step keeps this many for exact step 1 (0: none)
  bool codes = true;                        // keep the fragments' codes (index build --codes)
  std::int64_t codebook_size = 0;           // 0: automatic
  int residual_bits = -1;                   // index build --residual-bits (-1: its default)
  bool exact_store = true;                  // false: index build --no-exact-store
  // > 0: commit every this many images and add the rest to the committed index (index add), so
  // that an index without its exact store needs the scratch store of one part at a time.
  std::int64_t commit_every = 0;
  bool reuse = false;          // `dir` holds the index of an earlier run: search it, build nothing
  std::int64_t queries = 200;  // timed text queries
  // Timed image queries: stored images (image_query: nothing re-encoded) ranking the captions
  // with the default lists of that side, after the text queries.
  std::int64_t image_queries = 0;
  std::int64_t exhaustive_queries = 3;
  std::int64_t exhaustive_max_images = 100000;  // above: exhaustive time not measured
  // > 1: also `batch` exhaustive queries one at a time and then together (Searcher::search_many),
  // as a server would batch the queries that arrive while it computes.
  std::int64_t batch = 0;
  std::string faiss;  // empty: the index's default for the gallery size
  std::string store = "float16";
  bool memory_halves = false;  // store the items' memory halves (index build --memory-halves)
  std::string dir;             // where the index is built; empty: a temporary directory, removed
  std::uint64_t seed = 1;
  std::string device = "cpu";
  bool show_progress = true;
};

// One JSON line: build_s, index_bytes, store_bytes, p50_ms, p95_ms, p99_ms, first_query_ms, qps,
// peak_rss_mb, exhaustive_ms, top10_overlap, encode_ms_mean, stage1_ms_mean, stage2_ms_mean, stage2_floor_ms (the re-rank's unavoidable product,
// every pair's query rows against the memory weights, timed as one GEMM in the same run) and
// stage2_vs_floor, with image queries an "image_queries" object (lists, p50/p95/p99, stage means), with --batch a "batch" object (sequential_ms,
// together_ms, speedup, max_abs_diff, same_top10); and what they were measured with.
std::string bench_search(const SearchBenchOptions& options);

}  // namespace imram
