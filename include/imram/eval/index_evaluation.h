#pragma once
// `imram eval --index`: the standard protocol over an index's gallery, three ways side by side:
// exhaustive IMRAM (every pair scored), two-stage (a FAISS shortlist of N re-ranked by IMRAM;
// items outside the shortlist ranked after it by their stage-1 score) and stage 1 alone.
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "imram/metrics/recall.h"
#include "imram/runtime/world_share.h"
#include "imram/search/index_dir.h"
#include "imram/search/search_params.h"

namespace imram {

struct TwoStageEvalOptions {
  std::int64_t shortlist = 100;     // N; clamped to each side's gallery size (kAutoShortlist:
                                    // auto_shortlist of each side)
  std::int64_t prefilter = 0;       // > N: a cascade, IMRAM's first step keeps N of this many
                                    // (kAutoPrefilter: auto_prefilter of each side)
  std::int64_t step1 = kAutoStep1;  // the coded first step's list, where the index keeps codes
  bool exhaustive = true;           // also score every pair (the reference the others are held to)
  SearchParams params;              // the FAISS shortlist's per-call knobs (nprobe, efSearch)
  bool show_progress = true;
};

struct MethodResult {
  RetrievalMetrics metrics;
  std::optional<double> twin_accuracy;  // synthetic galleries with twins
  double ms_per_text_query = 0;         // text -> image
  double ms_per_image_query = 0;        // image -> text
};

// Of an index without its exact store, every score (exhaustive ones too) is from decoded
// fragments: `exact_scores` false, said by the table and the JSON.
struct TwoStageEvalResult {
  std::int64_t images = 0, captions = 0;
  bool exact_scores = true;
  std::int64_t shortlist_images = 0, shortlist_captions = 0;  // N after clamping, per side
  std::int64_t prefilter = 0;           // the cascade's first FAISS list of text queries (0: none)
  std::int64_t prefilter_captions = 0;  // and of image queries
  std::optional<MethodResult> exhaustive;
  std::optional<MethodResult> two_stage;  // absent for an index without a shortlist
  std::optional<MethodResult> stage1;
};

// A world of ranks sharing an evaluation: rank `rank` of `size` takes its rank_slice of the
// captions (every pair's columns) and of each direction's queries; all_gather_rows puts them
// together on every rank.
// With `share`, every rank computes the whole result (the gathered scores give the same metrics
// as one process); each query's time is still its own rank's.
TwoStageEvalResult evaluate_index(const GalleryIndex& index, const TwoStageEvalOptions& options,
                                  const WorldShare* share = nullptr);

// One configuration of two-stage search.
struct SampledSetting {
  std::int64_t shortlist = 100;     // N (or N2 of a cascade; kAutoShortlist: by gallery size)
  std::int64_t prefilter = 0;       // N1 of a cascade (0: none; kAutoPrefilter: by gallery size)
  std::int64_t step1 = kAutoStep1;  // what the coded first step keeps of N1 (0: no coded step)
};

// `imram eval --index --queries N`: search quality at gallery scale from a sample of queries,
// each held to exhaustive IMRAM (scored for the sampled queries only, so that a gallery of
// 100,000 images is measured in minutes): the rank of the query's own item both ways, and how
// often exhaustive IMRAM's top 1 and top 10 are among the two-stage search's first results.
struct SampledEvalOptions {
  std::int64_t queries = 200;       // per direction (at most the gallery's)
  std::int64_t image_queries = -1;  // image queries instead (< 0: as many as `queries`; 0: none)
  // Each setting searches the same sampled queries, held to the same exhaustive scores: comparing
  // configurations costs one exhaustive pass, the expensive part, not one per configuration.
  std::vector<SampledSetting> settings{SampledSetting{}};
  std::uint64_t seed = 1;
  std::int64_t batch = 16;  // sampled queries scored exhaustively together
  SearchParams params;      // the FAISS shortlist's per-call knobs (nprobe, efSearch)
  // The results compared per query (at most the shortlist): what a user is shown, however many
  // items the search scored to order them. An own item beyond them is "beyond the list".
  std::int64_t results = 100;
  bool show_progress = true;
};

struct SampledDirection {
  std::int64_t queries = 0;
  std::int64_t shortlist = 0;  // N (N2 of a cascade) on this side, resolved and clamped
  std::int64_t prefilter = 0;  // N1 of the cascade on this side (0: none)
  std::int64_t step1 = 0;      // what its coded first step keeps for exact step 1 (0: no coded step)
  std::int64_t results = 0;    // results compared per query
  // R@1, R@5, R@10 of the sample (the best-ranked own item), exhaustive and two-stage.
  double exhaustive_r1 = 0, exhaustive_r5 = 0, exhaustive_r10 = 0;
  double two_stage_r1 = 0, two_stage_r5 = 0, two_stage_r10 = 0;
  double same_rank = 0;                            // fraction: the own item's two-stage rank is its exhaustive rank
                                                   // (or both lie beyond the results compared)
  double top1_in_shortlist = 0;                    // fraction: exhaustive top 1 among the two-stage results compared
  double top10_in_shortlist = 0;                   // fraction: all of exhaustive top 10 among them
  std::int64_t twin_queries = 0;                   // text queries whose image has a twin (synthetic galleries)
  double twin_exhaustive = 0, twin_two_stage = 0;  // of those, the fraction whose image beats its twin
  double exhaustive_ms = 0, two_stage_ms = 0;      // per query
};

struct SampledPoint {
  SampledDirection text_to_image, image_to_text;  // each with the setting as resolved on its side
};

struct SampledEvalResult {
  std::int64_t images = 0, captions = 0, results = 0;
  bool exact_scores = true;          // as TwoStageEvalResult's
  std::vector<SampledPoint> points;  // one per setting, in the options' order
};

// With `share`, each rank runs its share of the sample and the counts are added up: every rank
// holds one process's result (the times per query are the ranks' summed over the sample).
SampledEvalResult evaluate_index_sampled(const GalleryIndex& index, const SampledEvalOptions& options,
                                         const WorldShare* share = nullptr);
std::string sampled_table(const SampledEvalResult& result);
std::string sampled_json(const SampledEvalResult& result);

// The side-by-side table, and the JSON of `imram eval --json` (its keys are the two-stage
// method's, or the exhaustive one's without a shortlist; plus "shortlist", "stage1" and
// "exhaustive").
std::string two_stage_table(const TwoStageEvalResult& result);
std::string two_stage_json(const TwoStageEvalResult& result);

}  // namespace imram
