#include "imram/eval/index_evaluation.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <unordered_set>

#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "imram/metrics/twin_accuracy.h"
#include "imram/runtime/runtime.h"
#include "imram/search/rerank.h"
#include "imram/util/progress.h"
#include "imram/util/rank_slice.h"
#include "imram/util/stopwatch.h"

namespace imram {

namespace {

// Shortlisted items rank first (in the order of their score), everything else after them in
// the order of the stage-1 score: scores are lifted above every stage-1 value.
constexpr double kShortlistLift = 1e6;

// Each image's twin (-1: none); empty when the gallery names no twin. Read once per evaluation:
// each line of image info is parsed whole (drawings included).
std::vector<std::int64_t> twins_in(const GalleryIndex& index) {
  std::vector<std::int64_t> twins;
  if (!index.described()) return twins;
  for (std::int64_t image = 0; image < index.num_images(); ++image) twins.push_back(index.image_info(image).twin);
  if (std::all_of(twins.begin(), twins.end(), [](std::int64_t t) { return t < 0; })) twins.clear();
  return twins;
}

std::optional<double> twins_of(const std::vector<std::int64_t>& twins, const GalleryIndex& index,
                               const torch::Tensor& sims) {
  if (twins.empty()) return std::nullopt;
  const auto data = sims.contiguous();
  return twin_accuracy(data.data_ptr<double>(), sims.size(0), sims.size(1), twins, index.captions_per_image());
}

RetrievalMetrics metrics_of(const GalleryIndex& index, const torch::Tensor& sims) {
  const auto data = sims.contiguous();
  return compute_metrics(data.data_ptr<double>(), sims.size(0), sims.size(1), index.captions_per_image(),
                         thread_count());
}

// Metrics whose image->text ranks come from `i2t` and text->image ranks from `t2i`.
RetrievalMetrics combine(const GalleryIndex& index, const torch::Tensor& i2t, const torch::Tensor& t2i) {
  const auto by_image = metrics_of(index, i2t), by_caption = metrics_of(index, t2i);
  RetrievalMetrics metrics;
  metrics.i2t = by_image.i2t;
  metrics.t2i = by_caption.t2i;
  metrics.rsum = metrics.i2t.r1 + metrics.i2t.r5 + metrics.i2t.r10 + metrics.t2i.r1 + metrics.t2i.r5 + metrics.t2i.r10;
  return metrics;
}

EncodedQuery stored_caption_query(const GalleryIndex& index, std::int64_t caption, const torch::Tensor& globals) {
  EncodedQuery query;
  query.caption = index.store()->captions({caption});
  query.caption.words = query.caption.words.to(index.model().net->parameters().front().device());
  if (globals.defined()) query.global = globals[caption];
  return query;
}

}  // namespace

TwoStageEvalResult evaluate_index(const GalleryIndex& index, const TwoStageEvalOptions& options,
                                  const WorldShare* share) {
  if (index.captions_per_image() < 1)
    throw Error(index.dir() + ": its captions are not tied to its images, so there is no ground truth to evaluate");
  torch::NoGradGuard no_grad;
  TwoStageEvalResult result;
  const auto N = index.num_images(), M = index.num_captions();
  result.images = N;
  result.captions = M;
  result.exact_scores = index.store()->exact();
  if (N == 0) throw Error(index.dir() + ": the index is empty");
  const auto& model = *index.model().net;
  const auto device = model.parameters().front().device();
  const auto twins = twins_in(index);
  // This rank's share of `items`, and every rank's rows put together: one process is a world of one.
  const auto mine = [&](std::int64_t items) {
    return share ? rank_slice(items, share->rank, share->size) : Slice{0, items};
  };
  const auto gathered = [&](const torch::Tensor& rows) { return share ? share->all_gather_rows(rows) : rows; };

  if (options.exhaustive) {
    const Stopwatch watch;
    const auto columns = mine(M);
    std::vector<std::int64_t> image_ids(static_cast<std::size_t>(N)),
        caption_ids(static_cast<std::size_t>(columns.count));
    std::iota(image_ids.begin(), image_ids.end(), 0);
    std::iota(caption_ids.begin(), caption_ids.end(), columns.begin);
    auto images = index.store()->images(image_ids, /*memory_halves=*/true);
    auto captions = index.store()->captions(caption_ids, /*memory_halves=*/true);
    for (auto* t : {&images.regions, &images.text_halves, &images.image_halves, &captions.words, &captions.text_halves,
                    &captions.image_halves})
      if (t->defined()) *t = t->to(device);
    ProgressBar bar(share ? "scoring every pair (this rank's share)" : "scoring every pair", N * columns.count, "pairs",
                    options.show_progress);
    ScoreOptions score_options;
    score_options.progress = [&](std::int64_t done, std::int64_t) { bar.update(done); };
    const auto local = score_pairs(model, images, captions, score_options).total.to(torch::kCPU, torch::kFloat64);
    bar.finish();
    const auto sims = gathered(local.t().contiguous()).t().contiguous();
    const double ms = watch.milliseconds();
    MethodResult method{metrics_of(index, sims), twins_of(twins, index, sims), ms / double(M), ms / double(N)};
    result.exhaustive = method;
  }
  if (!index.has_shortlist() || options.shortlist == 0) return result;

  const auto image_globals = index.image_globals(), caption_globals = index.caption_globals();
  const auto stage1_sims = torch::matmul(image_globals, caption_globals.t()).to(torch::kFloat64);  // (N, M), exact
  const SearchLists asked{options.shortlist, options.prefilter, options.step1};
  const auto image_lists = index.resolved_lists(GallerySide::Images, asked);
  const auto caption_lists = index.resolved_lists(GallerySide::Captions, asked);
  const auto Ni = image_lists.shortlist, Nc = caption_lists.shortlist;
  result.shortlist_images = Ni;
  result.shortlist_captions = Nc;
  result.prefilter = image_lists.prefilter;
  result.prefilter_captions = caption_lists.prefilter;
  // Per query, one row of scores: its shortlist's lifted above the rest, ranked by stage 1.
  // Each rank fills the rows of its queries; a row is (text query, images) or (image, captions).
  MethodResult two, one;
  torch::Tensor two_t2i, one_t2i, two_i2t, one_i2t;
  // Milliseconds of stage 1 and of the whole search, summed over every rank's queries.
  const auto summed_ms = [&](const SearchStats& stats) {
    const auto totals =
        gathered(torch::tensor({{stats.stage1_ms, stats.stage1_ms + stats.stage2_ms}}, torch::kFloat64));
    return std::make_pair(totals.select(1, 0).sum().item<double>(), totals.select(1, 1).sum().item<double>());
  };
  {
    const auto queries = mine(M);
    auto two_rows = stage1_sims.t().narrow(0, queries.begin, queries.count).clone(torch::MemoryFormat::Contiguous);
    auto one_rows = two_rows.clone();
    auto two_a = two_rows.accessor<double, 2>(), one_a = one_rows.accessor<double, 2>();
    const auto searcher = index.searcher(GallerySide::Images, image_lists);
    ProgressBar bar("two-stage text->image", queries.count, "queries", options.show_progress);
    SearchStats stats;
    for (std::int64_t q = 0; q < queries.count; ++q) {
      const auto j = queries.begin + q;
      for (const auto& hit :
           searcher->search(stored_caption_query(index, j, caption_globals), Ni, &stats, options.params)) {
        two_a[q][hit.index] = kShortlistLift + hit.score;
        one_a[q][hit.index] = kShortlistLift + *hit.stage1;
      }
      bar.update(q + 1);
    }
    bar.finish();
    two_t2i = gathered(two_rows).t().contiguous();
    one_t2i = gathered(one_rows).t().contiguous();
    const auto [stage1_ms, search_ms] = summed_ms(stats);
    two.ms_per_text_query = search_ms / double(M);
    one.ms_per_text_query = stage1_ms / double(M);
  }
  {
    const auto queries = mine(N);
    auto two_rows = stage1_sims.narrow(0, queries.begin, queries.count).clone(torch::MemoryFormat::Contiguous);
    auto one_rows = two_rows.clone();
    auto two_a = two_rows.accessor<double, 2>(), one_a = one_rows.accessor<double, 2>();
    const auto searcher = index.searcher(GallerySide::Captions, caption_lists);
    ProgressBar bar("two-stage image->text", queries.count, "queries", options.show_progress);
    SearchStats stats;
    for (std::int64_t q = 0; q < queries.count; ++q) {
      for (const auto& hit : searcher->search(index.image_query(queries.begin + q), Nc, &stats, options.params)) {
        two_a[q][hit.index] = kShortlistLift + hit.score;
        one_a[q][hit.index] = kShortlistLift + *hit.stage1;
      }
      bar.update(q + 1);
    }
    bar.finish();
    two_i2t = gathered(two_rows);
    one_i2t = gathered(one_rows);
    const auto [stage1_ms, search_ms] = summed_ms(stats);
    two.ms_per_image_query = search_ms / double(N);
    one.ms_per_image_query = stage1_ms / double(N);
  }
  two.metrics = combine(index, two_i2t, two_t2i);
  two.twin_accuracy = twins_of(twins, index, two_t2i);
  one.metrics = combine(index, one_i2t, one_t2i);
  one.twin_accuracy = twins_of(twins, index, one_t2i);
  result.two_stage = two;
  result.stage1 = one;
  return result;
}

namespace {

// One direction of the sampled evaluation, for every setting: each sampled query is scored
// exhaustively once and searched once per setting. `own(query)` are the gallery items that belong
// to the query (its image, or the image's captions); `encode(query)` its encoded form;
// `twin(query)` the gallery item that must rank below the own one for twin accuracy (-1: none).
template <typename Own, typename Encode, typename Twin>
std::vector<SampledDirection> sample_direction(const GalleryIndex& index, GallerySide side, std::int64_t population,
                                               std::int64_t queries_wanted, const SampledEvalOptions& options,
                                               const char* label, Own own, Encode encode, Twin twin,
                                               const WorldShare* share) {
  std::vector<std::int64_t> sample(static_cast<std::size_t>(population));
  std::iota(sample.begin(), sample.end(), 0);
  std::mt19937_64 rng(options.seed);
  std::shuffle(sample.begin(), sample.end(), rng);
  sample.resize(std::size_t(std::min(queries_wanted, population)));
  std::vector<SampledDirection> results(options.settings.size());
  for (auto& result : results) result.queries = std::int64_t(sample.size());
  if (sample.empty()) return results;

  const ImramRefiner exhaustive(index.model().net, index.store(), side);
  const auto gallery = side == GallerySide::Images ? index.num_images() : index.num_captions();
  std::vector<std::shared_ptr<const Searcher>> searchers;
  for (std::size_t s = 0; s < results.size(); ++s) {
    const auto& setting = options.settings[s];
    auto& result = results[s];
    const auto lists = index.resolved_lists(side, {setting.shortlist, setting.prefilter, setting.step1});
    searchers.push_back(index.searcher(side, lists));
    result.shortlist = lists.shortlist;
    result.prefilter = lists.prefilter;
    result.step1 = lists.step1;
    result.results = std::min(result.shortlist, options.results);
  }
  std::vector<std::int64_t> all(static_cast<std::size_t>(gallery));
  std::iota(all.begin(), all.end(), 0);
  // A world of ranks takes the sample in shares and adds up what each counted.
  const auto mine =
      share ? rank_slice(std::int64_t(sample.size()), share->rank, share->size) : Slice{0, std::int64_t(sample.size())};
  ProgressBar bar(std::string("sampled ") + label + " queries" + (share ? " (this rank's share)" : ""), mine.count,
                  "queries", options.show_progress);
  double exhaustive_ms = 0;
  std::int64_t r1 = 0, r5 = 0, r10 = 0, twin_queries = 0, twin_exhaustive = 0;
  struct Counts {
    double ms = 0;
    std::int64_t t1 = 0, t5 = 0, t10 = 0, same = 0, top1_in = 0, top10_in = 0, twin_two_stage = 0;
  };
  std::vector<Counts> counts(results.size());
  const auto score_in = [](const std::vector<Hit>& list, std::int64_t item) {
    for (const auto& hit : list)
      if (hit.index == item) return std::optional<double>(hit.score);
    return std::optional<double>();
  };
  const auto first = std::size_t(mine.begin), last = std::size_t(mine.begin + mine.count);
  for (std::size_t begin = first; begin < last; begin += std::size_t(options.batch)) {
    const auto end = std::min(last, begin + std::size_t(options.batch));
    std::vector<EncodedQuery> queries;
    for (auto q = begin; q < end; ++q) queries.push_back(encode(sample[q]));
    const Stopwatch watch;
    const auto rankings = exhaustive.refine(queries, all, gallery, nullptr);
    exhaustive_ms += watch.milliseconds();
    for (auto q = begin; q < end; ++q) {
      const auto& ranking = rankings[q - begin];
      const auto mine = own(sample[q]);
      const auto is_own = [&](std::int64_t item) { return std::find(mine.begin(), mine.end(), item) != mine.end(); };
      std::int64_t exhaustive_rank = 0;
      while (!is_own(ranking[std::size_t(exhaustive_rank)].index)) ++exhaustive_rank;
      r1 += exhaustive_rank < 1, r5 += exhaustive_rank < 5, r10 += exhaustive_rank < 10;
      // As twin_accuracy: the own item must score strictly higher; in two-stage, an item that is
      // not in the list ranks below every item that is.
      const auto other = twin(sample[q]);
      if (other >= 0) {
        ++twin_queries;
        twin_exhaustive += *score_in(ranking, mine.front()) > *score_in(ranking, other);
      }
      for (std::size_t s = 0; s < results.size(); ++s) {
        auto& c = counts[s];
        const Stopwatch two_stage_watch;
        const auto hits = searchers[s]->search(queries[q - begin], results[s].results, nullptr, options.params);
        c.ms += two_stage_watch.milliseconds();
        auto two_stage_rank = std::numeric_limits<std::int64_t>::max();  // beyond the list
        for (std::size_t r = 0; r < hits.size(); ++r)
          if (is_own(hits[r].index)) {
            two_stage_rank = std::int64_t(r);
            break;
          }
        std::unordered_set<std::int64_t> scored;
        for (const auto& hit : hits) scored.insert(hit.index);
        c.t1 += two_stage_rank < 1, c.t5 += two_stage_rank < 5, c.t10 += two_stage_rank < 10;
        c.same += two_stage_rank == exhaustive_rank ||
                  (two_stage_rank >= std::int64_t(hits.size()) && exhaustive_rank >= std::int64_t(hits.size()));
        c.top1_in += scored.count(ranking.front().index) > 0;
        bool all_top10 = true;
        for (std::size_t r = 0; r < std::min<std::size_t>(10, ranking.size()); ++r)
          all_top10 = all_top10 && scored.count(ranking[r].index) > 0;
        c.top10_in += all_top10;
        if (other >= 0) {
          const auto own_score = score_in(hits, mine.front()), twin_score = score_in(hits, other);
          c.twin_two_stage += own_score && (!twin_score || *own_score > *twin_score);
        }
      }
      bar.update(std::int64_t(q - first) + 1);
    }
  }
  bar.finish();
  if (share) {
    // Every count is a whole number below 2^53 and every time a sum: exact in float64, in any order.
    std::vector<double> mine_counted{exhaustive_ms, double(r1),           double(r5),
                                     double(r10),   double(twin_queries), double(twin_exhaustive)};
    for (const auto& c : counts)
      for (const double value : {c.ms, double(c.t1), double(c.t5), double(c.t10), double(c.same), double(c.top1_in),
                                 double(c.top10_in), double(c.twin_two_stage)})
        mine_counted.push_back(value);
    const auto summed = share->all_gather_rows(torch::tensor(mine_counted, torch::kFloat64).unsqueeze(0)).sum(0);
    const auto total = [&](std::size_t i) { return summed[std::int64_t(i)].template item<double>(); };
    const auto whole = [&](std::size_t i) { return std::int64_t(std::llround(total(i))); };
    exhaustive_ms = total(0), r1 = whole(1), r5 = whole(2), r10 = whole(3), twin_queries = whole(4);
    twin_exhaustive = whole(5);
    for (std::size_t s = 0; s < counts.size(); ++s) {
      const auto at = 6 + 8 * s;
      auto& c = counts[s];
      c.ms = total(at), c.t1 = whole(at + 1), c.t5 = whole(at + 2), c.t10 = whole(at + 3), c.same = whole(at + 4);
      c.top1_in = whole(at + 5), c.top10_in = whole(at + 6), c.twin_two_stage = whole(at + 7);
    }
  }
  const double n = double(sample.size());
  for (std::size_t s = 0; s < results.size(); ++s) {
    auto& result = results[s];
    const auto& c = counts[s];
    result.exhaustive_r1 = 100.0 * double(r1) / n, result.exhaustive_r5 = 100.0 * double(r5) / n;
    result.exhaustive_r10 = 100.0 * double(r10) / n;
    result.two_stage_r1 = 100.0 * double(c.t1) / n, result.two_stage_r5 = 100.0 * double(c.t5) / n;
    result.two_stage_r10 = 100.0 * double(c.t10) / n;
    result.same_rank = double(c.same) / n;
    result.top1_in_shortlist = double(c.top1_in) / n;
    result.top10_in_shortlist = double(c.top10_in) / n;
    result.twin_queries = twin_queries;
    if (twin_queries > 0) {
      result.twin_exhaustive = double(twin_exhaustive) / double(twin_queries);
      result.twin_two_stage = double(c.twin_two_stage) / double(twin_queries);
    }
    result.exhaustive_ms = exhaustive_ms / n;
    result.two_stage_ms = c.ms / n;
  }
  return results;
}

nlohmann::ordered_json direction_json(const SampledDirection& d) {
  return {
      {"queries", d.queries},
      {"shortlist", d.shortlist},
      {"prefilter", d.prefilter},
      {"step1", d.step1},
      {"results", d.results},
      {"exhaustive",
       {{"r1", d.exhaustive_r1},
        {"r5", d.exhaustive_r5},
        {"r10", d.exhaustive_r10},
        {"ms_per_query", d.exhaustive_ms}}},
      {"two_stage",
       {{"r1", d.two_stage_r1}, {"r5", d.two_stage_r5}, {"r10", d.two_stage_r10}, {"ms_per_query", d.two_stage_ms}}},
      {"same_rank", d.same_rank},
      {"top1_in_shortlist", d.top1_in_shortlist},
      {"top10_in_shortlist", d.top10_in_shortlist},
      {"twin_queries", d.twin_queries},
      {"twin_accuracy", {{"exhaustive", d.twin_exhaustive}, {"two_stage", d.twin_two_stage}}}};
}

}  // namespace

SampledEvalResult evaluate_index_sampled(const GalleryIndex& index, const SampledEvalOptions& options,
                                         const WorldShare* share) {
  const auto cpi = index.captions_per_image();
  if (cpi < 1)
    throw Error(index.dir() + ": its captions are not tied to its images, so there is no ground truth to evaluate");
  if (!index.has_shortlist())
    throw Error(index.dir() +
                ": a sampled evaluation holds two-stage search to exhaustive IMRAM; give it an index "
                "with a shortlist");
  if (options.batch < 1) throw Error("a sampled evaluation needs batches of at least 1 query");
  if (options.results < 1) throw Error("a sampled evaluation compares at least 1 result per query");
  if (options.settings.empty()) throw Error("a sampled evaluation needs at least one shortlist setting");
  for (const auto& setting : options.settings)
    if (setting.shortlist == 0)
      throw Error(index.dir() +
                  ": a sampled evaluation holds two-stage search to exhaustive IMRAM; give --shortlist N, "
                  "not 0");
  torch::NoGradGuard no_grad;
  SampledEvalResult result;
  result.images = index.num_images();
  result.exact_scores = index.store()->exact();
  result.captions = index.num_captions();
  result.results = options.results;
  const auto caption_globals = index.caption_globals();
  const auto twins = twins_in(index);
  const auto text_to_image = sample_direction(
      index, GallerySide::Images, result.captions, options.queries, options, "text->image",
      [&](std::int64_t caption) { return std::vector<std::int64_t>{caption / cpi}; },
      [&](std::int64_t caption) { return stored_caption_query(index, caption, caption_globals); },
      [&](std::int64_t caption) { return twins.empty() ? std::int64_t(-1) : twins[std::size_t(caption / cpi)]; },
      share);
  const auto image_to_text = sample_direction(
      index, GallerySide::Captions, result.images, options.image_queries < 0 ? options.queries : options.image_queries,
      options, "image->text",
      [&](std::int64_t image) {
        std::vector<std::int64_t> captions(static_cast<std::size_t>(cpi));
        std::iota(captions.begin(), captions.end(), image * cpi);
        return captions;
      },
      [&](std::int64_t image) { return index.image_query(image); }, [](std::int64_t) { return std::int64_t(-1); },
      share);
  for (std::size_t s = 0; s < options.settings.size(); ++s)
    result.points.push_back({text_to_image[s], image_to_text[s]});
  return result;
}

namespace {

std::string method_name(const SampledDirection& d) {
  if (!d.prefilter) return "two-stage, N=" + std::to_string(d.shortlist);
  return "cascade " + std::to_string(d.prefilter) + (d.step1 ? " -> codes " + std::to_string(d.step1) : "") + " -> " +
         std::to_string(d.shortlist);
}

// The setting as each side resolved it, e.g. "cascade 20000 -> 333 (image queries: cascade 20000 -> 1000)".
std::string point_name(const SampledPoint& point) {
  auto name = method_name(point.text_to_image);
  if (point.image_to_text.queries > 0 && method_name(point.image_to_text) != name)
    name += " (image queries: " + method_name(point.image_to_text) + ")";
  return name;
}

nlohmann::ordered_json point_json(const SampledPoint& point) {
  return {{"shortlist", point.text_to_image.shortlist},
          {"prefilter", point.text_to_image.prefilter},
          {"step1", point.text_to_image.step1},
          {"t2i", direction_json(point.text_to_image)},
          {"i2t", direction_json(point.image_to_text)}};
}

}  // namespace

constexpr const char* kApproximateNote =
    "the index keeps no exact store: every score above, exhaustive ones too, is from fragments decoded from "
    "residuals\n";

std::string sampled_json(const SampledEvalResult& result) {
  nlohmann::ordered_json json{{"images", result.images}, {"captions", result.captions}};
  if (!result.exact_scores) json["exact_scores"] = false;
  // The first setting's keys at the top (the whole answer when there is one), every setting in
  // "points" when there are several.
  const auto first = point_json(result.points.front());
  for (const auto& [key, value] : first.items()) json[key] = value;
  if (result.points.size() > 1) {
    json["points"] = nlohmann::ordered_json::array();
    for (const auto& point : result.points) json["points"].push_back(point_json(point));
  }
  return json.dump();
}

std::string sampled_table(const SampledEvalResult& result) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-13s %7s   %-26s   %-26s   %9s %9s %9s   %9s %9s\n", "", "", "exhaustive R@1/5/10",
                "two-stage R@1/5/10", "same", "top1 in", "top10 in", "ms/query", "ms/query");
  out += line;
  std::snprintf(line, sizeof line, "%-13s %7s   %-26s   %-26s   %9s %9s %9s   %9s %9s\n", "direction", "queries", "",
                "", "rank", "results", "results", "exhaust.", "two-stage");
  out += line;
  auto row = [&](const char* name, const SampledDirection& d) {
    std::snprintf(line, sizeof line,
                  "%-13s %7lld   %8.2f %8.2f %8.2f   %8.2f %8.2f %8.2f   %9.4f %9.4f %9.4f   %9.1f %9.2f\n", name,
                  static_cast<long long>(d.queries), d.exhaustive_r1, d.exhaustive_r5, d.exhaustive_r10, d.two_stage_r1,
                  d.two_stage_r5, d.two_stage_r10, d.same_rank, d.top1_in_shortlist, d.top10_in_shortlist,
                  d.exhaustive_ms, d.two_stage_ms);
    out += line;
  };
  const auto& first = result.points.front();
  for (const auto& point : result.points) {
    if (result.points.size() > 1) out += point_name(point) + "\n";
    if (point.text_to_image.queries > 0) row("text->image", point.text_to_image);
    if (point.image_to_text.queries > 0) row("image->text", point.image_to_text);
  }
  std::snprintf(line, sizeof line, "%lld images, %lld captions; ", static_cast<long long>(result.images),
                static_cast<long long>(result.captions));
  out += line;
  if (result.points.size() == 1) out += point_name(first) + "; ";
  out += "the first " + std::to_string(result.results) +
         " results (at most the shortlist) compared; exhaustive "
         "IMRAM scored for the sampled queries only\n";
  if (!result.exact_scores) out += kApproximateNote;
  if (first.text_to_image.twin_queries > 0) {
    std::snprintf(line, sizeof line,
                  "twin accuracy of the %lld sampled captions whose image has a twin: exhaustive %.4f",
                  static_cast<long long>(first.text_to_image.twin_queries), first.text_to_image.twin_exhaustive);
    out += line;
    for (const auto& point : result.points) {
      std::snprintf(line, sizeof line, ", %s %.4f", method_name(point.text_to_image).c_str(),
                    point.text_to_image.twin_two_stage);
      out += line;
    }
    out += "\n";
  }
  return out;
}

namespace {

nlohmann::ordered_json method_json(const MethodResult& method) {
  auto json = nlohmann::ordered_json::parse(metrics_json(method.metrics));
  if (method.twin_accuracy) json["twin_accuracy"] = *method.twin_accuracy;
  json["ms_per_text_query"] = method.ms_per_text_query;
  json["ms_per_image_query"] = method.ms_per_image_query;
  return json;
}

}  // namespace

std::string two_stage_json(const TwoStageEvalResult& result) {
  const auto& main = result.two_stage ? *result.two_stage : *result.exhaustive;
  auto json = method_json(main);
  json["shortlist"] = result.two_stage ? result.shortlist_images : 0;
  if (result.prefilter) json["prefilter"] = result.prefilter;
  if (result.prefilter_captions) json["prefilter_captions"] = result.prefilter_captions;
  if (result.stage1) json["stage1"] = method_json(*result.stage1);
  if (result.exhaustive && result.two_stage) json["exhaustive"] = method_json(*result.exhaustive);
  if (!result.exact_scores) json["exact_scores"] = false;
  return json.dump();
}

std::string two_stage_table(const TwoStageEvalResult& result) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-24s %29s   %29s   %10s %10s\n", "", "image->text", "text->image", "ms/text",
                "ms/image");
  out += line;
  std::snprintf(line, sizeof line, "%-24s %9s %9s %9s   %9s %9s %9s   %10s %10s %7s\n", "method", "R@1", "R@5", "R@10",
                "R@1", "R@5", "R@10", "query", "query", "twins");
  out += line;
  auto row = [&](const std::string& name, const MethodResult& m) {
    char twins[16] = "-";
    if (m.twin_accuracy) std::snprintf(twins, sizeof twins, "%.4f", *m.twin_accuracy);
    std::snprintf(line, sizeof line, "%-24s %9.2f %9.2f %9.2f   %9.2f %9.2f %9.2f   %10.3f %10.3f %7s\n", name.c_str(),
                  m.metrics.i2t.r1, m.metrics.i2t.r5, m.metrics.i2t.r10, m.metrics.t2i.r1, m.metrics.t2i.r5,
                  m.metrics.t2i.r10, m.ms_per_text_query, m.ms_per_image_query, twins);
    out += line;
  };
  if (result.exhaustive) row("exhaustive IMRAM", *result.exhaustive);
  if (result.two_stage)
    row(result.prefilter
            ? "cascade, " + std::to_string(result.prefilter) + " -> " + std::to_string(result.shortlist_images) +
                  (result.prefilter_captions != result.prefilter
                       ? " (image queries: " + std::to_string(result.prefilter_captions) + ")"
                       : "")
            : "two-stage, N=" + std::to_string(result.shortlist_images),
        *result.two_stage);
  if (result.exhaustive && result.two_stage) {
    // What the fast path costs in accuracy, in points (twins: in points of percent too).
    const auto& e = result.exhaustive->metrics;
    const auto& t = result.two_stage->metrics;
    char twins[16] = "-";
    if (result.exhaustive->twin_accuracy && result.two_stage->twin_accuracy)
      std::snprintf(twins, sizeof twins, "%+.2f",
                    100.0 * (*result.two_stage->twin_accuracy - *result.exhaustive->twin_accuracy));
    std::snprintf(line, sizeof line, "%-24s %+9.2f %+9.2f %+9.2f   %+9.2f %+9.2f %+9.2f   %10s %10s %7s\n",
                  "gap to exhaustive", t.i2t.r1 - e.i2t.r1, t.i2t.r5 - e.i2t.r5, t.i2t.r10 - e.i2t.r10,
                  t.t2i.r1 - e.t2i.r1, t.t2i.r5 - e.t2i.r5, t.t2i.r10 - e.t2i.r10, "", "", twins);
    out += line;
  }
  if (result.stage1) row("stage 1 alone", *result.stage1);
  std::snprintf(line, sizeof line, "%lld images, %lld captions", static_cast<long long>(result.images),
                static_cast<long long>(result.captions));
  out += line;
  if (result.exhaustive) out += "; exhaustive times are one matrix for all queries, divided by their count";
  out += "\n";
  if (!result.exact_scores) out += kApproximateNote;
  return out;
}

}  // namespace imram
