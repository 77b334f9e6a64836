#include "imram/search/rerank.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "imram/error.h"

namespace imram {

namespace {

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// Items per engine call: bounded bytes of encoded gallery items held at once.
std::int64_t chunk_items(const ImramModelImpl& model, std::int64_t fragments_per_item) {
  constexpr double kChunkBytes = 256.0 * (1 << 20);
  const double item_bytes = 4.0 * double(std::max<std::int64_t>(1, fragments_per_item)) * double(model.config.embed_size);
  return std::max<std::int64_t>(1, std::int64_t(kChunkBytes / item_bytes));
}

void check_query_side(const EncodedQuery& query, GallerySide side) {
  if (query.searches() != side)
    throw Error(side == GallerySide::Images ? "this searcher ranks images: give a text query"
                                            : "this searcher ranks captions: give an image query");
}

}  // namespace

std::vector<double> score_query(const ImramModelImpl& model, const ItemStore& store,
                                const EncodedQuery& query, const std::vector<std::int64_t>& ids) {
  torch::NoGradGuard no_grad;
  const auto device = model.parameters().front().device();
  std::vector<double> scores;
  scores.reserve(ids.size());
  const bool text = query.is_text();
  constexpr std::int64_t kWordsPerCaption = 64;  // a generous bound: captions are ragged
  const auto chunk = chunk_items(model, text ? store.regions_per_image() : kWordsPerCaption);
  // One query item: the batched formulation puts the query's rows of every pair into one product
  // with the memory weights, where the per-item CPU path would stream them once per pair.
  ScoreOptions options;
  options.tensor_path = true;
  for (std::size_t begin = 0; begin < ids.size(); begin += std::size_t(chunk)) {
    const std::vector<std::int64_t> part(ids.begin() + std::ptrdiff_t(begin),
                                         ids.begin() + std::ptrdiff_t(std::min(ids.size(), begin + std::size_t(chunk))));
    torch::Tensor total;
    if (text) {
      auto images = store.images(part);
      images.regions = images.regions.to(device);
      if (images.region_mask.defined()) images.region_mask = images.region_mask.to(device);
      total = score_pairs(model, images, query.caption, options).total.select(1, 0);
    } else {
      auto captions = store.captions(part);
      captions.words = captions.words.to(device);
      total = score_pairs(model, query.image, captions, options).total.select(0, 0);
    }
    const auto values = total.to(torch::kCPU, torch::kFloat64).contiguous();
    scores.insert(scores.end(), values.data_ptr<double>(), values.data_ptr<double>() + values.numel());
  }
  return scores;
}

std::vector<Hit> top_hits(const std::vector<double>& scores, std::int64_t k) {
  std::vector<std::int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  const auto n = std::min<std::size_t>(order.size(), std::size_t(std::max<std::int64_t>(k, 0)));
  std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(n), order.end(), [&](std::int64_t a, std::int64_t b) {
    return scores[std::size_t(a)] > scores[std::size_t(b)] || (scores[std::size_t(a)] == scores[std::size_t(b)] && a < b);
  });
  std::vector<Hit> hits;
  for (std::size_t i = 0; i < n; ++i) hits.push_back({order[i], scores[std::size_t(order[i])], std::nullopt});
  return hits;
}

ExhaustiveSearcher::ExhaustiveSearcher(ImramModel model, std::shared_ptr<const ItemStore> store, GallerySide side)
    : model_(std::move(model)), store_(std::move(store)), side_(side) {}

std::int64_t ExhaustiveSearcher::size() const {
  return side_ == GallerySide::Images ? store_->num_images() : store_->num_captions();
}

std::vector<Hit> ExhaustiveSearcher::search(const EncodedQuery& query, std::int64_t k, SearchStats* stats) const {
  check_query_side(query, side_);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::int64_t> ids(static_cast<std::size_t>(size()));
  std::iota(ids.begin(), ids.end(), 0);
  auto hits = top_hits(score_query(*model_, *store_, query, ids), k);
  if (stats) {
    stats->stage2_ms += milliseconds_since(start);
    stats->scored += std::int64_t(ids.size());
  }
  return hits;
}

RerankSearcher::RerankSearcher(std::shared_ptr<const Searcher> shortlist, std::int64_t candidates,
                               ImramModel model, std::shared_ptr<const ItemStore> store)
    : shortlist_(std::move(shortlist)), candidates_(candidates), model_(std::move(model)), store_(std::move(store)) {
  if (candidates_ < 1) throw Error("a re-rank stage needs a shortlist of at least 1 item");
}

std::vector<Hit> RerankSearcher::search(const EncodedQuery& query, std::int64_t k, SearchStats* stats) const {
  check_query_side(query, side());
  auto start = std::chrono::steady_clock::now();
  const auto shortlist = shortlist_->search(query, std::max(candidates_, k), nullptr);
  if (stats) stats->stage1_ms += milliseconds_since(start);
  start = std::chrono::steady_clock::now();
  std::vector<std::int64_t> ids;
  for (const auto& hit : shortlist) ids.push_back(hit.index);
  const auto scores = score_query(*model_, *store_, query, ids);
  auto order = top_hits(scores, k);
  std::vector<Hit> hits;
  for (const auto& ranked : order) {
    const auto& candidate = shortlist[std::size_t(ranked.index)];
    hits.push_back({candidate.index, ranked.score, candidate.stage1 ? candidate.stage1 : candidate.score});
  }
  if (stats) {
    stats->stage2_ms += milliseconds_since(start);
    stats->scored += std::int64_t(ids.size());
  }
  return hits;
}

}  // namespace imram
