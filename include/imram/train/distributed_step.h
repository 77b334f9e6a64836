#pragma once
// One optimisation step of a world of ranks that computes what train_step computes for the
// whole batch (the hinge loss with hardest negatives of docs/model.md "Training", clip, Adam), the batch split over
// the ranks as the authors split it over GPUs: every rank encodes its own images and captions,
// the encoded regions are all-gathered, and each rank scores every image against its own
// captions, i.e. a block of columns of the batch's score matrix.
#include "imram/train/distributed.h"
#include "imram/train/train_step.h"

namespace imram {

// `local` is this rank's slice of the batch (rank_slice of the batch's pairs, image i paired
// with caption i). Every rank ends with the same weights and optimizer state. result.loss is
// the whole batch's loss; result.scores is this rank's (batch, local captions) block.
// Batches with fewer pairs than ranks run whole on every rank.
StepResult distributed_train_step(ImramModelImpl& model, torch::optim::Adam& optimizer, const Batch& local,
                                  const LossOptions& options, Communicator& world);

// Rank 0's parameters on every rank (a new model's initialisation must not depend on the rank).
void broadcast_parameters(ImramModelImpl& model, Communicator& world);

}  // namespace imram
