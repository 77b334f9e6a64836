#include "imram/search/rerank.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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

// The queries as one encoded set: captions padded to the longest, or images stacked.
EncodedQuery stack_queries(const std::vector<EncodedQuery>& queries) {
  if (queries.size() == 1) return queries.front();
  EncodedQuery together;
  if (queries.front().is_text()) {
    std::int64_t longest = 0;
    for (const auto& query : queries) longest = std::max(longest, query.caption.words.size(1));
    std::vector<torch::Tensor> words, lengths;
    for (const auto& query : queries) {
      words.push_back(torch::constant_pad_nd(query.caption.words, {0, 0, 0, longest - query.caption.words.size(1)}));
      lengths.push_back(query.caption.lengths);
    }
    together.caption = {torch::cat(words), torch::cat(lengths)};
    return together;
  }
  std::vector<torch::Tensor> regions, masks;
  bool masked = false;
  for (const auto& query : queries) {
    regions.push_back(query.image.regions);
    masked = masked || query.image.region_mask.defined();
  }
  together.image.regions = torch::cat(regions);
  if (masked) {
    for (const auto& query : queries)
      masks.push_back(query.image.region_mask.defined()
                          ? query.image.region_mask
                          : torch::ones({1, query.image.regions.size(1)}, torch::kBool));
    together.image.region_mask = torch::cat(masks);
  }
  return together;
}

void check_query_side(const EncodedQuery& query, GallerySide side) {
  if (query.searches() != side)
    throw Error(side == GallerySide::Images ? "this searcher ranks images: give a text query"
                                            : "this searcher ranks captions: give an image query");
}

}  // namespace

std::vector<std::vector<double>> score_queries(const ImramModelImpl& model, const ItemStore& store,
                                               const std::vector<EncodedQuery>& queries,
                                               const std::vector<std::int64_t>& ids) {
  torch::NoGradGuard no_grad;
  std::vector<std::vector<double>> scores(queries.size());
  if (queries.empty()) return scores;
  const bool text = queries.front().is_text();
  for (const auto& query : queries) check_query_side(query, text ? GallerySide::Images : GallerySide::Captions);
  const auto device = model.parameters().front().device();
  const auto together = stack_queries(queries);
  constexpr std::int64_t kWordsPerCaption = 64;  // a generous bound: captions are ragged
  const auto chunk = chunk_items(model, text ? store.regions_per_image() : kWordsPerCaption);
  // One query: the batched formulation puts the query's rows of every pair into one product with
  // the memory weights, where the per-item CPU path would stream them once per pair. Several:
  // the per-item path, made for many-by-many.
  ScoreOptions options;
  options.tensor_path = queries.size() == 1;
  for (std::size_t begin = 0; begin < ids.size(); begin += std::size_t(chunk)) {
    const std::vector<std::int64_t> part(ids.begin() + std::ptrdiff_t(begin),
                                         ids.begin() + std::ptrdiff_t(std::min(ids.size(), begin + std::size_t(chunk))));
    torch::Tensor total;  // (queries, part)
    if (text) {
      auto images = store.images(part);
      images.regions = images.regions.to(device);
      if (images.region_mask.defined()) images.region_mask = images.region_mask.to(device);
      total = score_pairs(model, images, together.caption, options).total.t();
    } else {
      auto captions = store.captions(part);
      captions.words = captions.words.to(device);
      total = score_pairs(model, together.image, captions, options).total;
    }
    const auto values = total.to(torch::kCPU, torch::kFloat64).contiguous();
    // NaN has no place in an order (the sort would put it anywhere): the item is named instead.
    const auto finite = torch::isfinite(values);
    if (!finite.all().item<bool>()) {
      const auto bad = (~finite).nonzero()[0];
      const auto item = part[std::size_t(bad[1].item<std::int64_t>())];
      const auto value = values[bad[0]][bad[1]].item<double>();
      throw Error(std::string(text ? "image " : "caption ") + std::to_string(item) + ": its score is " +
                  (std::isnan(value) ? "NaN" : value > 0 ? "+inf" : "-inf") +
                  ", not a number to rank by: the gallery's encoded items hold NaN or infinite values");
    }
    for (std::size_t q = 0; q < queries.size(); ++q) {
      const double* row = values.data_ptr<double>() + std::int64_t(q) * values.size(1);
      scores[q].insert(scores[q].end(), row, row + values.size(1));
    }
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
  return search_many({query}, k, stats).front();
}

std::vector<std::vector<Hit>> ExhaustiveSearcher::search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                                              SearchStats* stats) const {
  for (const auto& query : queries) check_query_side(query, side_);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::int64_t> ids(static_cast<std::size_t>(size()));
  std::iota(ids.begin(), ids.end(), 0);
  std::vector<std::vector<Hit>> answers;
  for (const auto& scores : score_queries(*model_, *store_, queries, ids)) answers.push_back(top_hits(scores, k));
  if (stats) {
    stats->stage2_ms += milliseconds_since(start);
    stats->scored += std::int64_t(ids.size() * queries.size());
  }
  return answers;
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
  const auto scores = score_queries(*model_, *store_, {query}, ids).front();
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
