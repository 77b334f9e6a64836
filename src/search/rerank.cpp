#include "imram/search/rerank.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "imram/error.h"
#include "imram/util/stopwatch.h"

namespace imram {

namespace {

// Gallery items per engine call: bounded bytes of encoded items held at once (captions are
// padded to the longest of their chunk, so a chunk of captions ends where its padded size would
// pass the bound).
constexpr double kChunkBytes = 256.0 * (1 << 20);

// `floats_per_fragment`: the fragment's embedding and the memory halves read with it, if any.
std::vector<std::vector<std::int64_t>> chunks_of(const ItemStore& store, GallerySide side,
                                                 std::int64_t floats_per_fragment,
                                                 const std::vector<std::int64_t>& ids) {
  const double row_bytes = 4.0 * double(floats_per_fragment);
  std::vector<std::vector<std::int64_t>> chunks;
  if (side == GallerySide::Images) {
    const auto per_chunk = std::max<std::int64_t>(
        1, std::int64_t(kChunkBytes / (row_bytes * double(std::max<std::int64_t>(1, store.regions_per_image())))));
    for (std::size_t begin = 0; begin < ids.size(); begin += std::size_t(per_chunk))
      chunks.emplace_back(ids.begin() + std::ptrdiff_t(begin),
                          ids.begin() + std::ptrdiff_t(std::min(ids.size(), begin + std::size_t(per_chunk))));
    return chunks;
  }
  std::int64_t longest = 0;
  for (const auto id : ids) {
    const auto length = store.caption_length(id);
    const auto padded = std::max(longest, length);
    if (chunks.empty() || double(chunks.back().size() + 1) * double(padded) * row_bytes > kChunkBytes) {
      chunks.emplace_back();
      longest = length;
    } else {
      longest = padded;
    }
    chunks.back().push_back(id);
  }
  return chunks;
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
      masks.push_back(query.image.region_mask.defined() ? query.image.region_mask
                                                        : torch::ones({1, query.image.regions.size(1)}, torch::kBool));
    together.image.region_mask = torch::cat(masks);
  }
  return together;
}

}  // namespace

void check_query_side(const EncodedQuery& query, GallerySide side) {
  if (query.searches() != side)
    throw Error(side == GallerySide::Images ? "this searcher ranks images: give a text query"
                                            : "this searcher ranks captions: give an image query");
}

ImramRefiner::ImramRefiner(ImramModel model, std::shared_ptr<const ItemStore> store, GallerySide side, int steps)
    : model_(std::move(model)), store_(std::move(store)), side_(side), steps_(steps) {}

std::int64_t ImramRefiner::size() const {
  return side_ == GallerySide::Images ? store_->num_images() : store_->num_captions();
}

std::vector<std::vector<Hit>> ImramRefiner::refine(const std::vector<EncodedQuery>& queries,
                                                   std::vector<std::int64_t> ids, std::int64_t k,
                                                   SearchStats* stats) const {
  const Stopwatch watch;
  torch::NoGradGuard no_grad;
  for (const auto& query : queries) check_query_side(query, side_);
  std::vector<std::vector<Hit>> answers(queries.size());
  if (queries.empty()) return answers;
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const auto& model = *model_;
  const auto device = model.parameters().front().device();
  const auto together = stack_queries(queries);
  // The fused path: with one query it puts the query's rows of every pair into one product with
  // the memory weights (engine/matching.cpp), with several it is made for many-by-many.
  ScoreOptions options;
  options.path = EnginePath::Automatic;
  options.steps = steps_;
  std::vector<std::vector<double>> scores(queries.size());
  EnginePath ran = options.path;
  const bool halves = (steps_ == 0 || steps_ > 1) && model.memory_halves_width() > 0;
  // On the CPU the engine reads a float16 store's items as they are, without a widened copy.
  const bool as_stored = device.is_cpu();
  const auto to_device = [&](torch::Tensor& t) {
    if (t.defined()) t = t.to(device);
  };
  const auto floats_per_fragment =
      model.config.embed_size + (halves && store_->keeps_memory_halves() ? model.memory_halves_width() : 0);
  for (const auto& part : chunks_of(*store_, side_, floats_per_fragment, ids)) {
    PairScores pairs;
    torch::Tensor total;  // (queries, part)
    if (side_ == GallerySide::Images) {
      auto images = store_->images(part, halves, as_stored);
      for (auto* t : {&images.regions, &images.region_mask, &images.text_halves, &images.image_halves}) to_device(*t);
      pairs = score_pairs(model, images, together.caption, options);
      total = pairs.total.t();
    } else {
      auto captions = store_->captions(part, halves, as_stored);
      for (auto* t : {&captions.words, &captions.text_halves, &captions.image_halves}) to_device(*t);
      pairs = score_pairs(model, together.image, captions, options);
      total = pairs.total;
    }
    ran = pairs.path;
    const auto values = total.to(torch::kCPU, torch::kFloat64).contiguous();
    // NaN has no place in an order (the sort would put it anywhere): the item is named instead.
    const auto finite = torch::isfinite(values);
    if (!finite.all().item<bool>()) {
      const auto bad = (~finite).nonzero()[0];
      const auto item = part[std::size_t(bad[1].item<std::int64_t>())];
      const auto value = values[bad[0]][bad[1]].item<double>();
      throw Error(std::string(side_ == GallerySide::Images ? "image " : "caption ") + std::to_string(item) +
                  ": its score is " +
                  (std::isnan(value) ? "NaN"
                   : value > 0       ? "+inf"
                                     : "-inf") +
                  ", not a number to rank by: the gallery's encoded items hold NaN or infinite values");
    }
    for (std::size_t q = 0; q < queries.size(); ++q) {
      const double* row = values.data_ptr<double>() + std::int64_t(q) * values.size(1);
      scores[q].insert(scores[q].end(), row, row + values.size(1));
    }
  }
  for (std::size_t q = 0; q < queries.size(); ++q) {
    for (auto hit : top_hits(scores[q], k)) {
      hit.index = ids[std::size_t(hit.index)];
      answers[q].push_back(hit);
    }
  }
  if (stats) {
    stats->stage2_ms += watch.milliseconds();
    stats->scored += std::int64_t(ids.size() * queries.size());
    stats->engine_path = to_string(ran);
  }
  return answers;
}

std::vector<Hit> top_hits(const std::vector<double>& scores, std::int64_t k) {
  std::vector<std::int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  const auto n = std::min<std::size_t>(order.size(), std::size_t(std::max<std::int64_t>(k, 0)));
  std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(n), order.end(), [&](std::int64_t a, std::int64_t b) {
    return scores[std::size_t(a)] > scores[std::size_t(b)] ||
           (scores[std::size_t(a)] == scores[std::size_t(b)] && a < b);
  });
  std::vector<Hit> hits;
  for (std::size_t i = 0; i < n; ++i) hits.push_back({order[i], scores[std::size_t(order[i])], std::nullopt});
  return hits;
}

ExhaustiveSearcher::ExhaustiveSearcher(ImramModel model, std::shared_ptr<const ItemStore> store, GallerySide side)
    : refiner_(std::move(model), std::move(store), side) {}

std::vector<std::vector<Hit>> ExhaustiveSearcher::search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                                              SearchStats* stats, const SearchParams&) const {
  std::vector<std::int64_t> ids(static_cast<std::size_t>(size()));
  std::iota(ids.begin(), ids.end(), 0);
  return refiner_.refine(queries, std::move(ids), k, stats);
}

RerankSearcher::RerankSearcher(std::shared_ptr<const Searcher> shortlist, std::int64_t candidates, ImramModel model,
                               std::shared_ptr<const ItemStore> store, std::int64_t prefilter,
                               std::shared_ptr<const CodedFirstStep> coded, std::int64_t step1,
                               std::int64_t gallery_items)
    : shortlist_(std::move(shortlist)),
      refiner_(model, store, shortlist_->side()),
      first_step_(model, store, shortlist_->side(), /*steps=*/1) {
  const auto own = shortlist_->size(), gallery = std::max(gallery_items, own);
  const auto values_per_item = stored_values_per_item(*store, shortlist_->side());
  const auto whole_candidates = resolve_shortlist(candidates, gallery, values_per_item);
  const auto whole_prefilter = resolve_prefilter(prefilter, gallery, values_per_item);
  if (whole_candidates < 1)
    throw Error("a re-rank stage needs a shortlist of at least 1 item, or an automatic one; not " +
                std::to_string(candidates));
  if (whole_prefilter < 0)
    throw Error("a prefilter is a number of items, or automatic; not " + std::to_string(prefilter));
  const auto whole_step1 = resolve_step1(step1, whole_prefilter, whole_candidates, values_per_item);
  if (whole_step1 < 0)
    throw Error("the coded first step's list is a number of items, or automatic; not " + std::to_string(step1));
  candidates_ = shard_list(whole_candidates, own, gallery);
  prefilter_ = shard_list(whole_prefilter, own, gallery);
  step1_ = shard_list(whole_step1, own, gallery);
  if (step1_ > 0) coded_ = std::move(coded);
  if (coded_ && coded_->side() != shortlist_->side()) throw Error("the coded first step ranks the other side");
}

std::vector<std::vector<Hit>> RerankSearcher::search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                                          SearchStats* stats, const SearchParams& params) const {
  for (const auto& query : queries) check_query_side(query, side());
  // The one clamp of the shortlist: at least the k asked for, at most the gallery.
  const auto kept = std::min(std::max(candidates_, k), size());
  const auto wanted = std::max(kept, std::min(prefilter_, size()));
  const auto shortlists = shortlist_->search_many(queries, wanted, stats, params);
  std::vector<std::vector<Hit>> answers;
  for (std::size_t q = 0; q < queries.size(); ++q) {
    std::unordered_map<std::int64_t, double> stage1;
    std::vector<std::int64_t> ids;
    for (const auto& hit : shortlists[q]) {
      ids.push_back(hit.index);
      stage1.emplace(hit.index, hit.stage1 ? *hit.stage1 : hit.score);
    }
    // Step 1 from the codes keeps at least what exact step 1 is to choose from.
    const auto coded_keeps = std::max(kept, step1_);
    if (coded_ && std::int64_t(ids.size()) > coded_keeps) {
      const auto best = coded_->best(queries[q], ids, coded_keeps, stats);
      ids.clear();
      for (const auto& hit : best) ids.push_back(hit.index);
    }
    if (std::int64_t(ids.size()) > kept) {
      const Stopwatch step1_watch;
      const auto best = first_step_.refine({queries[q]}, std::move(ids), kept, stats);
      if (stats) stats->exact_step1_ms += step1_watch.milliseconds();
      ids.clear();
      for (const auto& hit : best.front()) ids.push_back(hit.index);
    }
    // Different shortlists share no pairs: each query is refined on its own.
    auto hits = std::move(refiner_.refine({queries[q]}, std::move(ids), k, stats).front());
    for (auto& hit : hits) hit.stage1 = stage1.at(hit.index);
    answers.push_back(std::move(hits));
  }
  return answers;
}

}  // namespace imram
