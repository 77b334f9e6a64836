#pragma once
// Validation in a world: every rank encodes all images of the split and scores them against its
// share of the captions; the columns are all-gathered, so that every rank holds the metrics.
#include "imram/eval/evaluator.h"
#include "imram/train/distributed.h"

namespace imram {

EvalResult evaluate_in_world(ImramModelImpl& model, const Vocabulary& vocabulary, const PrecompSplit& split,
                             const EvalOptions& options, Communicator& world);

}  // namespace imram
