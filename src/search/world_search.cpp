#include "imram/search/world_search.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include "imram/error.h"
#include "imram/util/log.h"

namespace imram {

namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

// Every message starts with this header, broadcast by rank 0: {kind, side, k, nprobe, ef_search,
// payload bytes}. A search's payload (its encoded queries) follows as a second broadcast.
enum class Message : std::int64_t { kTick = 0, kSearch = 1, kStop = 2 };
constexpr std::int64_t kHeaderFields = 6;

// A rank's reply to a search, one row of doubles: failed (0/1), its stage-1, stage-2, coded and
// exact-step-1 milliseconds, pairs scored, then k hits per query as (id in its shard, score,
// stage-1 score or NaN), id -1 past its hits.
constexpr std::int64_t kReplyFields = 6;
constexpr std::int64_t kHitFields = 3;

c10::IValue optional_tensor(const torch::Tensor& tensor) {
  return tensor.defined() ? c10::IValue(tensor.to(torch::kCPU)) : c10::IValue();
}

torch::Tensor tensor_or_undefined(const c10::IValue& value, torch::Device device) {
  return value.isNone() ? torch::Tensor() : value.toTensor().to(device);
}

// What a searcher reads of a query: its fragments and global embedding (not its text).
torch::Tensor pack_queries(const std::vector<EncodedQuery>& queries) {
  std::vector<c10::IValue> items;
  for (const auto& query : queries) {
    if (query.is_text()) {
      const auto& c = query.caption;
      items.push_back(c10::ivalue::Tuple::create({true, optional_tensor(c.words), optional_tensor(c.lengths),
                                                  optional_tensor(c.text_halves), optional_tensor(c.image_halves),
                                                  optional_tensor(query.global)}));
    } else {
      const auto& i = query.image;
      items.push_back(c10::ivalue::Tuple::create({false, optional_tensor(i.regions), optional_tensor(i.region_mask),
                                                  optional_tensor(i.text_halves), optional_tensor(i.image_halves),
                                                  optional_tensor(query.global)}));
    }
  }
  const auto bytes = torch::pickle_save(c10::ivalue::Tuple::create(std::move(items)));
  auto payload = torch::empty({std::int64_t(bytes.size())}, torch::kUInt8);
  std::memcpy(payload.data_ptr<std::uint8_t>(), bytes.data(), bytes.size());
  return payload;
}

std::vector<EncodedQuery> unpack_queries(const torch::Tensor& payload, torch::Device device) {
  const auto* begin = reinterpret_cast<const char*>(payload.data_ptr<std::uint8_t>());
  const auto value = torch::pickle_load(std::vector<char>(begin, begin + payload.numel()));
  std::vector<EncodedQuery> queries;
  for (const auto& item : value.toTuple()->elements().vec()) {
    const auto fields = item.toTuple()->elements().vec();
    EncodedQuery query;
    if (fields.at(0).toBool()) {
      query.caption = {tensor_or_undefined(fields[1], device), tensor_or_undefined(fields[2], torch::kCPU),
                       tensor_or_undefined(fields[3], device), tensor_or_undefined(fields[4], device)};
    } else {
      query.image = {tensor_or_undefined(fields[1], device), tensor_or_undefined(fields[2], device),
                     tensor_or_undefined(fields[3], device), tensor_or_undefined(fields[4], device)};
    }
    query.global = tensor_or_undefined(fields[5], device);
    queries.push_back(std::move(query));
  }
  return queries;
}

torch::Tensor reply_row(const std::vector<std::vector<Hit>>* hits, const SearchStats& stats, std::size_t queries,
                        std::int64_t k) {
  auto row = torch::zeros({1, kReplyFields + std::int64_t(queries) * k * kHitFields}, torch::kFloat64);
  auto* values = row.data_ptr<double>();
  values[0] = hits ? 0 : 1;
  values[1] = stats.stage1_ms;
  values[2] = stats.stage2_ms;
  values[3] = stats.coded_ms;
  values[4] = stats.exact_step1_ms;
  values[5] = double(stats.scored);
  for (std::size_t q = 0; q < queries; ++q)
    for (std::int64_t slot = 0; slot < k; ++slot) {
      auto* out = values + kReplyFields + (std::int64_t(q) * k + slot) * kHitFields;
      const Hit* hit = hits && slot < std::int64_t((*hits)[q].size()) ? &(*hits)[q][std::size_t(slot)] : nullptr;
      out[0] = hit ? double(hit->index) : -1;
      out[1] = hit ? hit->score : 0;
      out[2] = hit && hit->stage1 ? *hit->stage1 : std::numeric_limits<double>::quiet_NaN();
    }
  return row;
}

}  // namespace

struct SearchWorld::State {
  WorldShare world;
  ShardRanges images, captions;
  std::mutex collective;  // one message at a time: every rank takes them in rank 0's order
  mutable std::mutex status;
  std::condition_variable wake;
  std::string lost;
  bool stopping = false;
  Clock::time_point last_message = Clock::now();
  std::thread ticker;

  void mark_lost(const std::string& why) {
    std::lock_guard<std::mutex> lock(status);
    if (lost.find(why) == std::string::npos) lost += (lost.empty() ? "" : "; ") + why;
  }

  // Under `status`, with `lost` set.
  Unavailable unavailable() const {
    return Unavailable("the sharded search cannot answer: " + lost + "; it needs every shard's rank: restart it");
  }

  void check_available() const {
    std::lock_guard<std::mutex> lock(status);
    if (!lost.empty()) throw unavailable();
  }

  const ShardRanges& ranges(GallerySide side) const { return side == GallerySide::Images ? images : captions; }

  // Under `collective`.
  void send(Message kind, std::int64_t side, std::int64_t k, const SearchParams& params, const torch::Tensor& payload) {
    auto header = torch::tensor({std::int64_t(kind), side, k, std::int64_t(params.nprobe),
                                 std::int64_t(params.ef_search), payload.defined() ? payload.numel() : 0},
                                torch::kInt64);
    world.broadcast(header);
    if (payload.defined()) {
      auto bytes = payload;
      world.broadcast(bytes);
    }
    std::lock_guard<std::mutex> lock(status);
    last_message = Clock::now();
  }

  // A collective's failure: the world is broken from now on.
  [[noreturn]] void broken(const std::exception& e) {
    mark_lost(e.what());
    std::lock_guard<std::mutex> lock(status);
    throw unavailable();
  }

  void tick() {
    std::lock_guard<std::mutex> lock(collective);
    {
      std::lock_guard<std::mutex> state(status);
      if (!lost.empty() || stopping) return;
    }
    try {
      send(Message::kTick, 0, 0, {}, {});
      world.gather_rows(torch::zeros({1, 1}, torch::kFloat64));
    } catch (const std::exception& e) {
      mark_lost(e.what());
      log_error("sharded search: " + std::string(e.what()));
    }
  }

  void stop_ticker() {
    {
      std::lock_guard<std::mutex> lock(status);
      stopping = true;
    }
    wake.notify_all();
    if (ticker.joinable()) ticker.join();
  }

  void run_ticker() {
    const auto interval = Seconds(std::max(0.05, world.collective_timeout_s / 4));
    std::unique_lock<std::mutex> lock(status);
    while (!wake.wait_for(lock, interval, [this] { return stopping; })) {
      if (!lost.empty() || Clock::now() - last_message < interval) continue;
      lock.unlock();
      tick();
      lock.lock();
    }
  }
};

namespace {

class WorldSearcher final : public Searcher {
 public:
  WorldSearcher(std::shared_ptr<SearchWorld::State> state, std::shared_ptr<const Searcher> own)
      : state_(std::move(state)), own_(std::move(own)) {}
  GallerySide side() const override { return own_->side(); }
  std::int64_t size() const override { return ranges().total(); }

  std::vector<std::vector<Hit>> search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                            SearchStats* stats, const SearchParams& params) const override {
    const auto payload = pack_queries(queries);
    std::lock_guard<std::mutex> lock(state_->collective);
    state_->check_available();
    SearchStats own_stats;
    std::vector<std::vector<Hit>> own_hits;
    std::exception_ptr own_failure;
    torch::Tensor replies;
    try {
      state_->send(Message::kSearch, std::int64_t(side()), k, params, payload);
      // The others wait for every reply: a failure here is answered as one too.
      try {
        own_hits = own_->search_many(queries, k, &own_stats, params);
      } catch (...) {
        own_failure = std::current_exception();
      }
      replies = state_->world.gather_rows(reply_row(own_failure ? nullptr : &own_hits, own_stats, queries.size(), k));
    } catch (const std::exception& e) {
      state_->broken(e);
    }
    if (own_failure) std::rethrow_exception(own_failure);
    std::vector<std::vector<std::vector<Hit>>> per_shard(std::size_t(replies.size(0)));
    SearchStats merged = own_stats;
    for (std::int64_t rank = 0; rank < replies.size(0); ++rank) {
      const auto* values = replies[rank].data_ptr<double>();
      if (values[0] != 0) throw Error("shard " + std::to_string(rank) + " could not search (its rank's log says why)");
      // The ranks search at once: the slowest one's times are the search's.
      merged.stage1_ms = std::max(merged.stage1_ms, values[1]);
      merged.stage2_ms = std::max(merged.stage2_ms, values[2]);
      merged.coded_ms = std::max(merged.coded_ms, values[3]);
      merged.exact_step1_ms = std::max(merged.exact_step1_ms, values[4]);
      if (rank > 0) merged.scored += std::int64_t(values[5]);
      auto& shard = per_shard[std::size_t(rank)];
      shard.resize(queries.size());
      for (std::size_t q = 0; q < queries.size(); ++q)
        for (std::int64_t slot = 0; slot < k; ++slot) {
          const auto* hit = values + kReplyFields + (std::int64_t(q) * k + slot) * kHitFields;
          if (hit[0] < 0) break;
          Hit parsed{std::int64_t(hit[0]), hit[1], std::nullopt};
          if (!std::isnan(hit[2])) parsed.stage1 = hit[2];
          shard[q].push_back(parsed);
        }
    }
    if (stats) {
      stats->stage1_ms += merged.stage1_ms;
      stats->stage2_ms += merged.stage2_ms;
      stats->coded_ms += merged.coded_ms;
      stats->exact_step1_ms += merged.exact_step1_ms;
      stats->scored += merged.scored;
      stats->engine_path = merged.engine_path;
    }
    return merge_shard_hits(per_shard, ranges(), k);
  }

 private:
  const ShardRanges& ranges() const { return state_->ranges(own_->side()); }
  std::shared_ptr<SearchWorld::State> state_;
  std::shared_ptr<const Searcher> own_;
};

}  // namespace

SearchWorld::SearchWorld(WorldShare world, ShardRanges images, ShardRanges captions)
    : state_(std::make_shared<State>()) {
  if (world.rank != 0) throw Error("a sharded search's searches are asked by rank 0");
  if (world.size != images.shards() || world.size != captions.shards())
    throw Error("a sharded search needs one rank per shard: " + std::to_string(images.shards()) + " shards, " +
                std::to_string(world.size) + " ranks");
  if (!(world.collective_timeout_s > 0)) throw Error("a sharded search needs collectives that time out");
  state_->world = std::move(world);
  state_->images = std::move(images);
  state_->captions = std::move(captions);
  if (state_->world.on_lost) {
    std::weak_ptr<State> weak = state_;
    state_->world.on_lost([weak, shards = state_->images.shards()](int rank, const std::string& why) {
      if (const auto state = weak.lock())
        state->mark_lost("shard " + std::to_string(rank) + " of " + std::to_string(shards) + " is gone: " + why);
    });
  }
  state_->ticker = std::thread([state = state_.get()] { state->run_ticker(); });
}

SearchWorld::~SearchWorld() { state_->stop_ticker(); }

std::shared_ptr<const Searcher> SearchWorld::searcher(std::shared_ptr<const Searcher> own) {
  const auto& ranges = state_->ranges(own->side());
  if (own->size() != ranges.begins[1] - ranges.begins[0])
    throw Error("a sharded search's rank 0 holds shard 0: its searcher holds other items");
  return std::make_shared<WorldSearcher>(state_, std::move(own));
}

std::string SearchWorld::lost() const {
  std::lock_guard<std::mutex> lock(state_->status);
  return state_->lost;
}

int SearchWorld::shards() const { return state_->images.shards(); }

void SearchWorld::stop() {
  state_->stop_ticker();
  std::lock_guard<std::mutex> lock(state_->collective);
  if (!lost().empty()) return;
  try {
    state_->send(Message::kStop, 0, 0, {}, {});
  } catch (const std::exception& e) {
    state_->mark_lost(e.what());
  }
}

void answer_world_searches(const WorldShare& world, const Searcher& images, const Searcher& captions,
                           torch::Device device) {
  for (;;) {
    auto header = torch::zeros({kHeaderFields}, torch::kInt64);
    world.broadcast(header);
    const auto* fields = header.data_ptr<std::int64_t>();
    const auto kind = Message(fields[0]);
    if (kind == Message::kStop) return;
    if (kind == Message::kTick) {
      world.gather_rows(torch::zeros({1, 1}, torch::kFloat64));
      continue;
    }
    if (kind != Message::kSearch)
      throw Error("rank " + std::to_string(world.rank) + ": an unknown message from rank 0 (" +
                  std::to_string(fields[0]) + ")");
    auto payload = torch::zeros({fields[5]}, torch::kUInt8);
    world.broadcast(payload);
    const auto queries = unpack_queries(payload, device);
    const auto& searcher = GallerySide(fields[1]) == GallerySide::Images ? images : captions;
    const std::int64_t k = fields[2];
    SearchParams params;
    params.nprobe = int(fields[3]);
    params.ef_search = int(fields[4]);
    SearchStats stats;
    std::vector<std::vector<Hit>> hits;
    bool failed = false;
    try {
      hits = searcher.search_many(queries, k, &stats, params);
    } catch (const std::exception& e) {
      failed = true;
      log_error("rank " + std::to_string(world.rank) + ": a search of its shard failed: " + e.what());
    }
    world.gather_rows(reply_row(failed ? nullptr : &hits, stats, queries.size(), k));
  }
}

}  // namespace imram
