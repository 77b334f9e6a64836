#pragma once
// The test oracle and benchmark baseline: a literal transcription of the authors' scoring loop
// (one caption at a time against every image, the memory layers applied to the concatenation
// [q; c] for every pair). Slow by design; the engine (scorer.h) must agree with it.
#include "imram/engine/scorer.h"

namespace imram {

PairScores reference_score_pairs(const ImramModelImpl& model, const EncodedImages& images,
                                 const EncodedCaptions& captions);

}  // namespace imram
