#pragma once
// `imram eval --index`: the standard protocol over an index's gallery, three ways side by side:
// exhaustive IMRAM (every pair scored), two-stage (a FAISS shortlist of N re-ranked by IMRAM;
// items outside the shortlist ranked after it by their stage-1 score) and stage 1 alone.
#include <cstdint>
#include <optional>
#include <string>

#include "imram/eval/recall.h"
#include "imram/search/index_dir.h"

namespace imram {

struct TwoStageEvalOptions {
  std::int64_t shortlist = 100;   // N; clamped to each side's gallery size
  std::int64_t prefilter = 0;     // > N: a cascade, IMRAM's first step keeps N of this many
  bool exhaustive = true;         // also score every pair (the reference the others are held to)
  bool show_progress = true;
};

struct MethodResult {
  RetrievalMetrics metrics;
  std::optional<double> twin_accuracy;  // synthetic galleries with twins
  double ms_per_text_query = 0;         // text -> image
  double ms_per_image_query = 0;        // image -> text
};

struct TwoStageEvalResult {
  std::int64_t images = 0, captions = 0;
  std::int64_t shortlist_images = 0, shortlist_captions = 0;  // N after clamping, per side
  std::int64_t prefilter = 0;     // the cascade's first FAISS list (0: none)
  std::optional<MethodResult> exhaustive;
  std::optional<MethodResult> two_stage;  // absent for an index without a shortlist
  std::optional<MethodResult> stage1;
};

TwoStageEvalResult evaluate_index(const GalleryIndex& index, const TwoStageEvalOptions& options);

// The side-by-side table, and the JSON of `imram eval --json` (its keys are the two-stage
// method's, or the exhaustive one's without a shortlist; plus "shortlist", "stage1" and
// "exhaustive").
std::string two_stage_table(const TwoStageEvalResult& result);
std::string two_stage_json(const TwoStageEvalResult& result);

}  // namespace imram
