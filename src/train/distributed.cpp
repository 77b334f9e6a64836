#include "imram/train/distributed.h"

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "imram/error.h"
#include "imram/runtime/runtime.h"

namespace imram {

namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? value : nullptr;
}

int env_int(const char* name, int fallback) {
  const char* value = env(name);
  if (!value) return fallback;
  try {
    std::size_t used = 0;
    const int parsed = std::stoi(value, &used);
    if (used == std::string(value).size()) return parsed;
  } catch (const std::exception&) {
  }
  throw Error(std::string(name) + "=" + value + ": not an integer");
}

int required_env_int(const char* name, const std::string& convention) {
  if (!env(name)) throw Error(convention + " world: " + name + " is not set");
  return env_int(name, 0);
}

// The first host of a SLURM node list: "gpu[03-04,07],cpu1" -> "gpu03".
std::string first_slurm_host(const std::string& nodes) {
  const auto end = nodes.find_first_of(",[");
  if (end == std::string::npos || nodes[end] == ',') return nodes.substr(0, end);
  const auto range_end = nodes.find_first_of("-,]", end + 1);
  return nodes.substr(0, end) + nodes.substr(end + 1, range_end - end - 1);
}

double env_seconds(const char* name, double fallback) {
  const char* value = env(name);
  if (!value) return fallback;
  try {
    const double seconds = std::stod(value);
    if (seconds > 0) return seconds;
  } catch (const std::exception&) {
  }
  throw Error(std::string(name) + "=" + value + ": not a positive number of seconds");
}

std::string heartbeat_key(int rank) { return "imram/heartbeat/" + std::to_string(rank); }

}  // namespace

std::optional<WorldSpec> world_from_environment() {
  WorldSpec spec;
  if (env("WORLD_SIZE")) {
    spec.launcher = env("IMRAM_LAUNCHER") ? env("IMRAM_LAUNCHER") : "torchrun";
    spec.size = required_env_int("WORLD_SIZE", spec.launcher);
    spec.rank = required_env_int("RANK", spec.launcher);
    spec.local_rank = env_int("LOCAL_RANK", 0);
    spec.local_size = env_int("LOCAL_WORLD_SIZE", 1);
    if (!env("MASTER_ADDR") || !env("MASTER_PORT"))
      throw Error(spec.launcher + " world: MASTER_ADDR and MASTER_PORT must both be set");
    spec.master_addr = env("MASTER_ADDR");
    spec.master_port = env_int("MASTER_PORT", 0);
  } else if (env("SLURM_PROCID") && env("SLURM_NTASKS") && env("SLURM_STEP_ID")) {
    // Only inside a job step (srun): a batch script itself also sees SLURM_NTASKS but is one process.
    spec.launcher = "slurm";
    spec.size = required_env_int("SLURM_NTASKS", spec.launcher);
    spec.rank = required_env_int("SLURM_PROCID", spec.launcher);
    spec.local_rank = env_int("SLURM_LOCALID", 0);
    // "4(x2)": 4 tasks on each of 2 nodes; the first count is this layout's per-node width.
    if (const char* per_node = env("SLURM_STEP_TASKS_PER_NODE")) spec.local_size = std::max(1, std::atoi(per_node));
    if (env("MASTER_ADDR")) {
      spec.master_addr = env("MASTER_ADDR");
    } else if (const char* nodes =
                   env("SLURM_STEP_NODELIST") ? env("SLURM_STEP_NODELIST") : env("SLURM_JOB_NODELIST")) {
      spec.master_addr = first_slurm_host(nodes);
    } else {
      throw Error("slurm world: neither MASTER_ADDR nor SLURM_STEP_NODELIST is set");
    }
    // Jobs sharing a node must not meet at the same port: derived from the job id by default.
    spec.master_port = env_int("MASTER_PORT", 20000 + env_int("SLURM_JOB_ID", 0) % 20000);
  } else {
    return std::nullopt;
  }
  if (spec.size < 1) throw Error(spec.launcher + " world: the world size must be >= 1");
  if (spec.rank < 0 || spec.rank >= spec.size)
    throw Error(spec.launcher + " world: rank " + std::to_string(spec.rank) + " is outside the world of " +
                std::to_string(spec.size));
  if (spec.master_port < 1 || spec.master_port > 65535)
    throw Error(spec.launcher + " world: port " + std::to_string(spec.master_port) + " is not a TCP port");
  if (spec.size == 1) return std::nullopt;
  return spec;
}

torch::Device device_of_rank(torch::Device requested, const WorldSpec& spec) {
  if (requested.is_cuda() && !requested.has_index())
    return torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(spec.local_rank));
  return requested;
}

int threads_of_rank(const WorldSpec& spec) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, spec.local_size));
}

struct Communicator::Impl {
  WorldSpec spec;
  torch::Device device = torch::kCPU;
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef USE_C10D_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  std::atomic<std::uint64_t> bytes{0};

  // Heartbeat: a thread with its own store connection bumps this rank's counter and watches the
  // others'. A counter that stops moving for `heartbeat_timeout` (or for a few intervals once a
  // collective has failed, which already says that someone is gone) names the lost rank.
  double heartbeat_interval = 1.0;
  double heartbeat_timeout = 30.0;
  std::atomic<bool> collective_failed{false};
  double collective_timeout = 1800;
  std::mutex mutex;
  // Set by on_lost (under `mutex`): who hears of lost ranks, and what it heard.
  std::function<void(int, const std::string&)> lost_listener;
  std::vector<bool> reported;
  std::string lost_ranks;
  std::condition_variable wake;
  bool stopping = false;
  std::thread heartbeat;
  bool closed = false;

  template <typename F>
  auto with_group(F&& f) {
#ifdef USE_C10D_NCCL
    if (nccl) return f(*nccl);
#endif
    return f(*gloo);
  }

  // Waits for a collective; a failure means a peer is gone: give the heartbeat the time to name
  // it (it ends the process, or tells the listener), and only if it cannot, report the
  // collective's own error.
  template <typename Work>
  void wait(const Work& work, const char* what) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      collective_failed = true;
      const auto deadline =
          Clock::now() + Seconds(std::max(heartbeat_timeout, 6 * heartbeat_interval) + heartbeat_interval);
      std::unique_lock<std::mutex> lock(mutex);
      // A listener hears within a few intervals once a collective has failed (beat's limit).
      if (lost_listener)
        wake.wait_until(lock, std::min(deadline, Clock::now() + Seconds(5 * heartbeat_interval)),
                        [this] { return !lost_ranks.empty(); });
      else
        wake.wait_until(lock, deadline, [] { return false; });
      throw Error(lost_ranks.empty() ? "rank " + std::to_string(spec.rank) + ": " + what + " failed: " + e.what()
                                     : lost_ranks);
    }
  }

  // A lost rank: the process ends naming it, unless a listener goes on without it.
  // The listener hears first: a collective that waits for the naming then fails after it.
  void report_lost(int rank, const std::string& message) {
    std::function<void(int, const std::string&)> listener;
    {
      std::unique_lock<std::mutex> lock(mutex);
      if (stopping) return;
      if (!lost_listener) lost(message);
      if (reported[std::size_t(rank)]) return;
      reported[std::size_t(rank)] = true;
      listener = lost_listener;
    }
    listener(rank, message);
    {
      std::unique_lock<std::mutex> lock(mutex);
      lost_ranks += (lost_ranks.empty() ? "" : "; ") + message;
    }
    wake.notify_all();
  }

  // Straight to standard error, not through the log sink: the process ends at once, and a sink
  // that waits (for Python's interpreter lock) could keep it from ending.
  [[noreturn]] void lost(const std::string& message) {
    std::fprintf(stderr, "imram: error: %s; rank %d of %d stops\n", message.c_str(), spec.rank, spec.size);
    std::fflush(stderr);
    std::_Exit(1);
  }

  void beat(const std::string& host) {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(spec.master_port);
    options.waitWorkers = false;
    options.timeout = std::chrono::milliseconds(std::int64_t(heartbeat_timeout * 1000));
    c10::intrusive_ptr<c10d::TCPStore> own;
    try {
      own = c10::make_intrusive<c10d::TCPStore>(host, options);
    } catch (const std::exception&) {
      lost("rank 0 lost (its rendezvous store at " + host + ":" + std::to_string(spec.master_port) +
           " stopped answering)");
    }
    std::vector<std::int64_t> seen(std::size_t(spec.size), -1);
    std::vector<Clock::time_point> moved(std::size_t(spec.size), Clock::now());
    while (true) {
      try {
        own->add(heartbeat_key(spec.rank), 1);
        const auto now = Clock::now();
        const double limit = collective_failed ? 3 * heartbeat_interval : heartbeat_timeout;
        for (int r = 0; r < spec.size; ++r) {
          if (r == spec.rank) continue;
          const auto value = own->add(heartbeat_key(r), 0);
          if (value != seen[std::size_t(r)]) {
            seen[std::size_t(r)] = value;
            moved[std::size_t(r)] = now;
          } else if (Seconds(now - moved[std::size_t(r)]).count() > limit) {
            // The cause is named: a failed collective says a peer is gone; silence alone may be a hang.
            const auto silent = std::to_string(int(Seconds(now - moved[std::size_t(r)]).count()));
            report_lost(r, "rank " + std::to_string(r) + " lost (" +
                               (collective_failed ? "a collective failed, and it sent no heartbeat for " + silent + " s"
                                                  : "no heartbeat for " + silent + " s: it died or hangs") +
                               ")");
          }
        }
      } catch (const std::exception&) {
        std::unique_lock<std::mutex> lock(mutex);
        if (stopping) return;
        lost("rank 0 lost (its rendezvous store at " + host + ":" + std::to_string(spec.master_port) +
             " stopped answering)");
      }
      std::unique_lock<std::mutex> lock(mutex);
      if (wake.wait_for(lock, Seconds(heartbeat_interval), [this] { return stopping; })) return;
    }
  }

  void stop_heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    if (heartbeat.joinable()) heartbeat.join();
  }
};

Communicator::Communicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Communicator::~Communicator() { impl_->stop_heartbeat(); }

std::unique_ptr<Communicator> Communicator::connect(const WorldSpec& spec, torch::Device device,
                                                    CollectiveTimeout collective_timeout) {
  auto impl = std::make_unique<Impl>();
  impl->spec = spec;
  impl->device = device;
  impl->reported.assign(std::size_t(spec.size), false);
  impl->heartbeat_timeout = env_seconds("IMRAM_DIST_HEARTBEAT_TIMEOUT", 30);
  impl->heartbeat_interval = std::min(1.0, impl->heartbeat_timeout / 4);
  impl->collective_timeout = collective_timeout == CollectiveTimeout::kHeartbeat
                                 ? impl->heartbeat_timeout
                                 : env_seconds("IMRAM_DIST_TIMEOUT", 1800);
  const auto timeout = std::chrono::milliseconds(std::int64_t(1000 * impl->collective_timeout));
  const std::string where = spec.master_addr + ":" + std::to_string(spec.master_port);
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(spec.master_port);
    options.isServer = spec.rank == 0;
    options.numWorkers = static_cast<std::size_t>(spec.size);
    options.waitWorkers = true;
    options.timeout = std::chrono::milliseconds(std::int64_t(1000 * env_seconds("IMRAM_DIST_RENDEZVOUS_TIMEOUT", 300)));
    impl->store = c10::make_intrusive<c10d::TCPStore>(spec.master_addr, options);
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(spec.rank) + " of " + std::to_string(spec.size) + ": rendezvous at " + where +
                " failed (" + e.what() + ")");
  }
  try {
    if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      impl->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, spec.rank, spec.size, options);
#else
      throw Error("--device " + device.str() + ": this LibTorch was built without NCCL; train on the CPU");
#endif
    } else {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* interface = env("GLOO_SOCKET_IFNAME");
      if (interface)
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      else if (spec.master_addr == "127.0.0.1" || spec.master_addr == "localhost")
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      impl->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, spec.rank, spec.size, options);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(spec.rank) + " of " + std::to_string(spec.size) +
                ": could not connect the process group through " + where + " (" + e.what() + ")");
  }
  auto* raw = impl.get();
  impl->heartbeat = std::thread([raw, host = spec.master_addr] { raw->beat(host); });
  return std::unique_ptr<Communicator>(new Communicator(std::move(impl)));
}

int Communicator::rank() const { return impl_->spec.rank; }
int Communicator::size() const { return impl_->spec.size; }
int Communicator::local_size() const { return impl_->spec.local_size; }
torch::Device Communicator::device() const { return impl_->device; }
double Communicator::collective_timeout_s() const { return impl_->collective_timeout; }

void Communicator::on_lost(std::function<void(int rank, const std::string& why)> lost) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->lost_listener = std::move(lost);
}

void Communicator::all_reduce(torch::Tensor& tensor, Reduction reduction) {
  TORCH_CHECK(tensor.is_contiguous(), "all_reduce needs a contiguous tensor");
  c10d::AllreduceOptions options;
  options.reduceOp = reduction == Reduction::kSum   ? c10d::ReduceOp::SUM
                     : reduction == Reduction::kMax ? c10d::ReduceOp::MAX
                                                    : c10d::ReduceOp::MIN;
  std::vector<torch::Tensor> tensors{tensor};
  impl_->wait(impl_->with_group([&](auto& group) { return group.allreduce(tensors, options); }), "all-reduce");
  impl_->bytes += tensor.numel() * tensor.element_size();
}

namespace {

// Collectives move blocks of one shape: each rank's rows go padded with zeros to the largest share.
torch::Tensor padded_rows(const torch::Tensor& rows, const std::vector<std::int64_t>& counts) {
  auto shape = rows.sizes().vec();
  shape[0] = *std::max_element(counts.begin(), counts.end());
  auto padded = torch::zeros(shape, rows.options());
  padded.narrow(0, 0, rows.size(0)).copy_(rows);
  return padded;
}

// Every rank's padded block cut back to its rows, in rank order.
torch::Tensor unpadded_rows(const std::vector<torch::Tensor>& blocks, const std::vector<std::int64_t>& counts) {
  std::vector<torch::Tensor> parts;
  for (std::size_t r = 0; r < blocks.size(); ++r) parts.push_back(blocks[r].narrow(0, 0, counts[r]));
  return torch::cat(parts);
}

}  // namespace

torch::Tensor Communicator::all_gather_rows(const torch::Tensor& local, const std::vector<std::int64_t>& counts) {
  TORCH_CHECK(local.size(0) == counts[std::size_t(rank())], "all_gather_rows: local rows differ from counts");
  auto padded = padded_rows(local, counts);
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < size(); ++r) outputs[0].push_back(torch::empty_like(padded));
  std::vector<torch::Tensor> inputs{padded};
  impl_->wait(impl_->with_group([&](auto& group) { return group.allgather(outputs, inputs); }), "all-gather");
  impl_->bytes += std::uint64_t(size()) * padded.numel() * padded.element_size();
  return unpadded_rows(outputs[0], counts);
}

std::vector<std::int64_t> Communicator::all_gather_count(std::int64_t count) {
  const auto gathered = all_gather_rows(torch::full({1}, count, torch::TensorOptions(torch::kInt64).device(device())),
                                        std::vector<std::int64_t>(std::size_t(size()), 1))
                            .to(torch::kCPU);
  return std::vector<std::int64_t>(gathered.data_ptr<std::int64_t>(), gathered.data_ptr<std::int64_t>() + size());
}

torch::Tensor Communicator::gather_rows(const torch::Tensor& local, const std::vector<std::int64_t>& counts, int root) {
  TORCH_CHECK(local.size(0) == counts[std::size_t(rank())], "gather_rows: local rows differ from counts");
  auto padded = padded_rows(local, counts);
  std::vector<std::vector<torch::Tensor>> outputs;
  if (rank() == root) {
    outputs.resize(1);
    for (int r = 0; r < size(); ++r) outputs[0].push_back(torch::empty_like(padded));
  }
  std::vector<torch::Tensor> inputs{padded};
  c10d::GatherOptions options;
  options.rootRank = root;
  impl_->wait(impl_->with_group([&](auto& group) { return group.gather(outputs, inputs, options); }), "gather");
  impl_->bytes += std::uint64_t(rank() == root ? size() : 1) * padded.numel() * padded.element_size();
  return rank() == root ? unpadded_rows(outputs[0], counts) : torch::Tensor();
}

torch::Tensor Communicator::scatter_rows(const torch::Tensor& rows, const std::vector<std::int64_t>& counts, int root) {
  std::vector<std::vector<torch::Tensor>> inputs;
  if (rank() == root) {
    inputs.resize(1);
    std::int64_t begin = 0;
    for (int r = 0; r < size(); ++r) {
      inputs[0].push_back(padded_rows(rows.narrow(0, begin, counts[std::size_t(r)]), counts));
      begin += counts[std::size_t(r)];
    }
    TORCH_CHECK(begin == rows.size(0), "scatter_rows: rows differ from counts");
  }
  std::vector<torch::Tensor> outputs{padded_rows(rows.narrow(0, 0, 0), counts)};
  c10d::ScatterOptions options;
  options.rootRank = root;
  impl_->wait(impl_->with_group([&](auto& group) { return group.scatter(outputs, inputs, options); }), "scatter");
  impl_->bytes += std::uint64_t(rank() == root ? size() : 1) * outputs[0].numel() * outputs[0].element_size();
  return outputs[0].narrow(0, 0, counts[std::size_t(rank())]);
}

void Communicator::broadcast(std::vector<torch::Tensor>& tensors, int root) {
  c10d::BroadcastOptions options;
  options.rootRank = root;
  for (auto& tensor : tensors) {
    TORCH_CHECK(tensor.is_contiguous(), "broadcast needs contiguous tensors");
    std::vector<torch::Tensor> one{tensor};
    impl_->wait(impl_->with_group([&](auto& group) { return group.broadcast(one, options); }), "broadcast");
    impl_->bytes += tensor.numel() * tensor.element_size();
  }
}

bool Communicator::any(bool flag) {
  auto value = torch::full({1}, flag ? 1 : 0, torch::TensorOptions(torch::kInt32).device(device()));
  all_reduce(value, Reduction::kMax);
  return value.item<int>() != 0;
}

void Communicator::barrier() { any(false); }

void Communicator::close() {
  if (impl_->closed) return;
  barrier();
  impl_->stop_heartbeat();
  barrier();
  impl_->closed = true;
}

std::uint64_t Communicator::bytes_exchanged() const { return impl_->bytes; }

JoinedWorld join_world(torch::Device requested, bool threads_given, CollectiveTimeout timeout) {
  JoinedWorld joined;
  joined.device = requested;
  const auto spec = world_from_environment();
  if (!spec) return joined;
  if (!threads_given) set_thread_count(threads_of_rank(*spec));
  joined.device = device_of_rank(requested, *spec);
  joined.communicator = Communicator::connect(*spec, joined.device, timeout);
  return joined;
}

WorldShare share_of_world(Communicator& world) {
  WorldShare share;
  share.rank = world.rank();
  share.size = world.size();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  share.threads_alone = std::min(cores, thread_count() * std::max(1, world.local_size()));
  share.collective_timeout_s = world.collective_timeout_s();
  share.on_lost = [&world](std::function<void(int, const std::string&)> lost) { world.on_lost(std::move(lost)); };
  share.all_gather_rows = [&world](const torch::Tensor& rows) {
    const auto counts = world.all_gather_count(rows.size(0));
    return world.all_gather_rows(rows.contiguous().to(world.device()), counts).to(torch::kCPU);
  };
  share.gather_rows = [&world](const torch::Tensor& rows) {
    const auto counts = world.all_gather_count(rows.size(0));
    const auto gathered = world.gather_rows(rows.contiguous().to(world.device()), counts, 0);
    return gathered.defined() ? gathered.to(torch::kCPU) : gathered;
  };
  share.scatter_rows = [&world](const torch::Tensor& rows, const std::vector<std::int64_t>& counts) {
    return world.scatter_rows(rows.contiguous().to(world.device()), counts, 0).to(torch::kCPU);
  };
  share.broadcast = [&world](torch::Tensor& tensor) {
    std::vector<torch::Tensor> on_device{tensor.contiguous().to(world.device())};
    world.broadcast(on_device, 0);
    if (!on_device[0].is_same(tensor)) tensor.copy_(on_device[0]);
  };
  return share;
}

}  // namespace imram
