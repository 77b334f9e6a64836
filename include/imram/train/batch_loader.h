#pragma once
// Assembles training batches on a background thread from the memory-mapped features, so that
// the compute never waits on the disk: while step t runs, batches t+1.. are being gathered.
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "imram/data/precomp_dataset.h"
#include "imram/engine/encoding.h"
#include "imram/train/train_step.h"

namespace imram {

class BatchLoader {
 public:
  // Batches order[b * batch_size ...] for b = first_batch.. (the last one may be smaller). In a
  // world, only rank `rank`'s share of each batch (rank_slice): each rank reads its own items.
  BatchLoader(const PrecompSplit& split, const TokenIds& captions, std::vector<std::int64_t> order,
              std::int64_t batch_size, std::int64_t first_batch, std::size_t prefetch = 3, int rank = 0,
              int world_size = 1);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The next batch, or nothing at the end of the epoch. Rethrows the loader's errors
  // (e.g. NaN features, naming the file and image).
  std::optional<Batch> next();
  std::int64_t batches() const;

 private:
  void produce();
  Batch assemble(std::int64_t batch) const;

  const PrecompSplit& split_;
  const TokenIds& captions_;
  std::vector<std::int64_t> order_;
  std::int64_t batch_size_;
  std::int64_t next_batch_;
  std::size_t prefetch_;
  int rank_, world_size_;
  std::deque<Batch> ready_;
  bool finished_ = false;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::thread worker_;
};

}  // namespace imram
