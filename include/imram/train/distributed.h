#pragma once
// A world of training processes (ranks) on LibTorch's c10d: rendezvous through a TCPStore hosted
// by rank 0, collectives over Gloo (CPU tensors) or NCCL (CUDA tensors, when LibTorch was built
// with it). c10d stays out of this header: the trainer only sees tensors and ranks.
//
// A rank that dies or stops answering is noticed by a heartbeat every rank keeps in the store:
// the others exit with an error naming it within IMRAM_DIST_HEARTBEAT_TIMEOUT seconds (default
// 30), instead of waiting in a collective for the process group's timeout. A rank that goes on
// without it (rank 0 of a sharded search) asks to be told instead (Communicator::on_lost).
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "imram/runtime/world_share.h"
#include "imram/util/rank_slice.h"

namespace imram {

struct WorldSpec {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // rank among the processes of this machine: picks the GPU
  int local_size = 1;  // processes on this machine: share its cores
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string launcher;  // "torchrun", "slurm" or "--nproc", for messages
};

// The world this process was started in: the torchrun convention (RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT; also what --nproc sets) or a SLURM job step (srun: SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, MASTER_ADDR/MASTER_PORT or the step's first node). Nothing for a
// single process. Throws Error on inconsistent variables.
std::optional<WorldSpec> world_from_environment();

// The device of a rank: `cuda` without an index becomes the local rank's GPU (one per rank).
torch::Device device_of_rank(torch::Device requested, const WorldSpec& spec);
// The compute threads of a rank when none were asked for: this machine's cores shared out.
int threads_of_rank(const WorldSpec& spec);

enum class Reduction { kSum, kMax, kMin };

// How long a collective may wait for its peers. Long: a slow rank's share of validation or a
// checkpoint (IMRAM_DIST_TIMEOUT, default 1,800 s). Heartbeat: a world that answers requests and
// waits on no long work (a sharded search) gives up as soon as the heartbeat would name a rank.
enum class CollectiveTimeout { kLong, kHeartbeat };

class Communicator {
 public:
  // Joins the world (blocks until all ranks have joined or the rendezvous times out).
  // Collectives run on `device`: Gloo for the CPU, NCCL for CUDA.
  static std::unique_ptr<Communicator> connect(const WorldSpec& spec, torch::Device device,
                                               CollectiveTimeout timeout = CollectiveTimeout::kLong);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  int local_size() const;  // ranks on this machine
  torch::Device device() const;
  double collective_timeout_s() const;

  // From now on a lost rank is reported to `lost` (once per rank, from the heartbeat's thread)
  // instead of ending this process, and a collective that fails throws Error naming the lost
  // rank as soon as the heartbeat has named it. The world is broken from then on: no rank may
  // take part in another collective.
  void on_lost(std::function<void(int rank, const std::string& why)> lost);

  // In place on every rank.
  void all_reduce(torch::Tensor& tensor, Reduction reduction);
  // Every rank's `local` rows (dim 0; the other dims equal), concatenated in rank order.
  // counts[r] is rank r's number of rows (from all_gather_count).
  torch::Tensor all_gather_rows(const torch::Tensor& local, const std::vector<std::int64_t>& counts);
  std::vector<std::int64_t> all_gather_count(std::int64_t count);
  // The same rows on `root` only (an undefined tensor on the others).
  torch::Tensor gather_rows(const torch::Tensor& local, const std::vector<std::int64_t>& counts, int root);
  // `root`'s rows cut in rank order, counts[r] for rank r; the others pass rows of the same type
  // and trailing shape.
  torch::Tensor scatter_rows(const torch::Tensor& rows, const std::vector<std::int64_t>& counts, int root);
  void broadcast(std::vector<torch::Tensor>& tensors, int root);
  bool any(bool flag);
  void barrier();
  // Leaves the world: no rank stops its heartbeat before every rank is done, so that a rank
  // finishing first is not mistaken for a lost one.
  void close();

  // Bytes of the collectives' results on this rank (all-reduce: the tensor; all-gather: every
  // rank's padded block) since it joined: what the algorithms must move, whatever their wire
  // pattern. A caller measures a stretch by the difference.
  std::uint64_t bytes_exchanged() const;

 private:
  struct Impl;
  explicit Communicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// This process's place in the world it was started in (world_from_environment), joined: its
// rank's device and, unless `threads_given`, its share of the cores. A single process keeps
// `requested` and has no communicator.
struct JoinedWorld {
  torch::Device device = torch::kCPU;
  std::unique_ptr<Communicator> communicator;
  bool reports() const { return !communicator || communicator->rank() == 0; }  // rank 0 speaks
};
JoinedWorld join_world(torch::Device requested, bool threads_given,
                       CollectiveTimeout timeout = CollectiveTimeout::kLong);

// The collectives of `world` as the jobs beside training take them (runtime/world_share.h),
// rank 0 the root; tensors move through the world's device and come back on the CPU.
WorldShare share_of_world(Communicator& world);

}  // namespace imram
