#pragma once
// A world of ranks as the jobs beside training see it (evaluation, index building): this rank's
// place and the collectives those jobs use, as functions. The command adapts its communicator
// (train/distributed.h: share_of_world), so that search/ needs none; a single process passes none.
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace imram {

struct WorldShare {
  int rank = 0, size = 1;
  // Every rank's rows (dim 0) concatenated in rank order, on the CPU, on every rank.
  std::function<torch::Tensor(const torch::Tensor& rows)> all_gather_rows;
  // The same on rank 0 only (an undefined tensor on the others): what one writer keeps.
  std::function<torch::Tensor(const torch::Tensor& rows)> gather_rows;
  // Rank 0's `rows` cut in rank order, counts[r] rows for rank r, on the CPU; the other ranks
  // pass rows of the same type and trailing shape (their number does not matter).
  std::function<torch::Tensor(const torch::Tensor& rows, const std::vector<std::int64_t>& counts)> scatter_rows;
  // Rank 0's tensor into every rank's, in place (the same shape and type on every rank).
  std::function<void(torch::Tensor& tensor)> broadcast;
  // Compute threads for work rank 0 does while the others wait for it (a codebook's k-means):
  // its machine's ranks' threads together; 0 for its own.
  int threads_alone = 0;
  // How long a collective waits for its peers before it fails (train/distributed.h).
  double collective_timeout_s = 0;
  // For a job that goes on when another rank is lost (rank 0 of a sharded search): `lost` is told
  // of each lost rank (from another thread), and the collectives then fail naming it, instead of
  // this process ending. Unset: the process ends with an error naming the lost rank.
  std::function<void(std::function<void(int rank, const std::string& why)> lost)> on_lost;
};

}  // namespace imram
