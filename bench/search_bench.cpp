#include "bench/search_bench.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "bench/benchmarks.h"
#include "imram/error.h"
#include "imram/model/memory.h"
#include "imram/runtime/runtime.h"
#include "imram/search/index_dir.h"
#include "imram/search/rerank.h"
#include "imram/util/atomic_file.h"
#include "imram/util/progress.h"
#include "imram/util/stopwatch.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::int64_t kWords = 996;  // plus the four special tokens: the bench's vocabulary

std::string random_text(std::mt19937_64& rng) {
  const auto length = 10 + std::int64_t(rng() % 8);  // 10..17 words: Flickr30K-like after <start>/<end>
  std::string text;
  for (std::int64_t t = 0; t < length; ++t) text += (t ? " w" : "w") + std::to_string(rng() % kWords);
  return text;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto position = p * double(values.size() - 1);
  const auto below = std::size_t(position);
  const auto above = std::min(values.size() - 1, below + 1);
  return values[below] + (position - double(below)) * (values[above] - values[below]);
}

std::uint64_t bytes_of(const std::string& dir, const std::vector<std::string>& suffixes) {
  std::uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(dir))
    for (const auto& suffix : suffixes) {
      const auto name = entry.path().filename().string();
      if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        total += entry.file_size();
    }
  return total;
}

// The product no re-rank of text queries can skip: from step 2 on, every pair's refined query
// rows against the memory weights, (pairs x words, d) x (d, 2d) per step that updates the memory
// again (K - 2 of them; K <= 2 needs none). Timed as the engine multiplies (imram's own product
// or BLAS, model/memory.h), median of 5, this machine, now.
double rerank_floor_ms(const ModelConfig& config, std::int64_t candidates, double mean_words) {
  const auto per_pair_steps = std::int64_t(config.iteration_steps) - 2;
  if (per_pair_steps < 1 || !config.uses_text_direction() || candidates < 1) return 0;
  torch::NoGradGuard no_grad;
  const auto rows = std::int64_t(std::llround(double(candidates) * mean_words));
  const auto d = config.embed_size;
  const MemoryDistillation memory{torch::nn::Linear(2 * d, d), torch::nn::Linear(2 * d, d), make_memory_panel_cache()};
  const auto a = torch::randn({rows, d});
  auto out = torch::empty({rows, 2 * d});
  std::vector<double> times;
  for (int rep = 0; rep < 6; ++rep) {
    const auto start = Clock::now();
    memory.products_into(MemoryColumns::Query, a, out, false);
    if (rep > 0) times.push_back(seconds_since(start) * 1e3);  // the first warms caches, threads and the panels
  }
  return percentile(times, 0.5) * double(per_pair_steps);
}

}  // namespace

std::string bench_search(const SearchBenchOptions& o) {
  if (o.images < 1 || o.queries < 1 || o.captions < 1) throw Error("bench search: sizes must be positive");
  if (o.reuse && o.dir.empty()) throw Error("bench search --reuse: give --dir, the directory of the earlier run");
  std::mt19937_64 rng(o.seed);
  torch::manual_seed(std::int64_t(o.seed));
  const bool temporary = o.dir.empty();
  const std::string root =
      temporary ? (fs::temp_directory_path() / ("imram-bench-search." + std::to_string(::getpid()))).string() : o.dir;
  if (!o.reuse) {
    remove_tree(root);
    fs::create_directories(root);
  }
  struct Cleanup {
    std::string dir;
    bool active;
    ~Cleanup() {
      if (active) remove_tree(dir);
    }
  } cleanup{root, temporary};

  std::vector<std::string> vocabulary_text;
  for (std::int64_t w = 0; w < kWords; ++w) vocabulary_text.push_back("w" + std::to_string(w));
  Model model;
  model.vocabulary = Vocabulary::build(vocabulary_text, 1);
  auto config = o.model;
  config.vocab_size = model.vocabulary->size();
  config.img_dim = o.feature_dim;
  config.global_head = config.embed_size;
  model.net = ImramModel(config);
  const std::string index_dir = root + "/index";
  double generate_s = 0, images_s = 0, faiss_s = 0, build_s = 0;
  if (!o.reuse) {
    model.net->eval();
    save_model(root + "/model", model);

    // Random region features from a pool: each image mixes two pool images with random weights,
    // so that a million distinct images cost memory bandwidth, not a million draws.
    constexpr std::int64_t kPool = 512, kBatch = 256;
    const auto pool = torch::randn({kPool, o.regions, o.feature_dim});
    IndexOptions index_options;
    index_options.faiss_factory = o.faiss;
    index_options.store = parse_store_dtype(o.store);
    index_options.memory_halves = o.memory_halves;
    index_options.codes = o.codes;
    index_options.codebook_size = o.codebook_size;
    index_options.residual_bits = o.residual_bits;
    index_options.exact_store = o.exact_store;
    index_options.show_progress = false;
    index_options.device = o.device;
    const auto build_start = Clock::now();
    auto writer = IndexWriter::create(index_dir, root + "/model", index_options);
    {
      ProgressBar bar("indexing random images", o.images, "images", o.show_progress);
      for (std::int64_t i = 0; i < o.images; i += kBatch) {
        const auto n = std::min(kBatch, o.images - i);
        auto start = Clock::now();
        const auto first = torch::randint(kPool, {n}, torch::kInt64),
                   second = torch::randint(kPool, {n}, torch::kInt64);
        const auto weights = torch::randn({n, 2, 1, 1});
        const auto features =
            pool.index_select(0, first) * weights.select(1, 0) + pool.index_select(0, second) * weights.select(1, 1);
        generate_s += seconds_since(start);
        start = Clock::now();
        writer.add_images(features);
        if (o.commit_every > 0 && (i + n) % o.commit_every < kBatch && i + n < o.images) {
          writer.commit();
          writer = IndexWriter::append(index_dir, false, o.device);
        }
        images_s += seconds_since(start);
        bar.update(i + n);
      }
      bar.finish();
    }
    TokenIds caption_ids;
    std::vector<std::string> caption_texts;
    for (std::int64_t j = 0; j < o.captions; ++j) {
      caption_texts.push_back(random_text(rng));
      caption_ids.push_back(model.vocabulary->encode(caption_texts.back()));
    }
    {
      // In blocks, as `index add` adds a split's captions, so that the encoding shows its progress.
      ProgressBar bar("indexing random captions", o.captions, "captions", o.show_progress);
      constexpr std::int64_t kCaptionBlock = 4096;
      for (std::int64_t j = 0; j < o.captions; j += kCaptionBlock) {
        const auto n = std::min(kCaptionBlock, o.captions - j);
        writer.add_captions(TokenIds(caption_ids.begin() + j, caption_ids.begin() + j + n),
                            std::vector<std::string>(caption_texts.begin() + j, caption_texts.begin() + j + n));
        bar.update(j + n);
      }
      bar.finish();
    }
    const auto commit_start = Clock::now();
    writer.commit();
    faiss_s = seconds_since(commit_start);
    build_s = seconds_since(build_start) - generate_s;
  }

  const auto open_start = Clock::now();
  const auto index = GalleryIndex::open(index_dir, parse_device(o.device));
  const auto& used = index->model().config();  // with --reuse, the earlier run's model
  const double open_ms = seconds_since(open_start) * 1e3;
  const auto lists = index->resolved_lists(GallerySide::Images, {o.shortlist, o.prefilter, o.step1});
  const auto shortlist = lists.shortlist;
  const auto searcher = index->searcher(GallerySide::Images, lists);
  const auto* rerank = dynamic_cast<const RerankSearcher*>(searcher.get());
  std::vector<std::string> queries;
  for (std::int64_t q = 0; q < o.queries; ++q) queries.push_back(random_text(rng));
  std::vector<double> latencies;
  std::vector<std::vector<Hit>> answers;
  double stage1_ms = 0, stage2_ms = 0, coded_ms = 0, exact_step1_ms = 0;
  std::int64_t query_words = 0;
  double encode_ms = 0;
  const auto queries_start = Clock::now();
  for (const auto& text : queries) {
    const auto start = Clock::now();
    SearchStats stats;
    const auto query = index->text_query(text);
    encode_ms += seconds_since(start) * 1e3;
    query_words += query.caption.lengths[0].item<std::int64_t>();
    answers.push_back(searcher->search(query, 10, &stats));
    latencies.push_back(seconds_since(start) * 1e3);
    stage1_ms += stats.stage1_ms;
    stage2_ms += stats.stage2_ms;
    coded_ms += stats.coded_ms;
    exact_step1_ms += stats.exact_step1_ms;
  }
  const double queries_s = seconds_since(queries_start);

  nlohmann::ordered_json image_side = nullptr;
  if (o.image_queries > 0) {
    const auto caption_lists = index->resolved_lists(GallerySide::Captions, SearchLists{});
    const auto caption_searcher = index->searcher(GallerySide::Captions, caption_lists);
    std::uniform_int_distribution<std::int64_t> pick(0, index->num_images() - 1);
    std::vector<double> image_latencies;
    SearchStats image_stats;
    for (std::int64_t q = 0; q < o.image_queries; ++q) {
      const auto start = Clock::now();
      caption_searcher->search(index->image_query(pick(rng)), 10, &image_stats);
      image_latencies.push_back(seconds_since(start) * 1e3);
    }
    const auto mean = [&](double total) { return total / double(o.image_queries); };
    image_side = {{"queries", o.image_queries},
                  {"shortlist", caption_lists.shortlist},
                  {"prefilter", caption_lists.prefilter},
                  {"step1", caption_lists.step1},
                  {"first_query_ms", image_latencies.front()},
                  {"p50_ms", percentile(image_latencies, 0.5)},
                  {"p95_ms", percentile(image_latencies, 0.95)},
                  {"p99_ms", percentile(image_latencies, 0.99)},
                  {"stage1_ms_mean", mean(image_stats.stage1_ms)},
                  {"coded_ms_mean", mean(image_stats.coded_ms)},
                  {"exact_step1_ms_mean", mean(image_stats.exact_step1_ms)},
                  {"stage2_ms_mean", mean(image_stats.stage2_ms)}};
  }

  const auto floor_ms = rerank_floor_ms(used, shortlist, double(query_words) / double(o.queries));
  const double stage2_mean_ms = stage2_ms / double(o.queries);

  nlohmann::ordered_json exhaustive_ms = nullptr, overlap = nullptr;
  std::int64_t exhaustive_count = 0;
  if (o.images <= o.exhaustive_max_images && o.exhaustive_queries > 0) {
    const auto exhaustive = index->searcher(GallerySide::Images, 0);
    std::vector<double> times;
    double overlaps = 0;
    exhaustive_count = std::min<std::int64_t>(o.exhaustive_queries, o.queries);
    for (std::int64_t q = 0; q < exhaustive_count; ++q) {
      const auto start = Clock::now();
      const auto hits = exhaustive->search(index->text_query(queries[std::size_t(q)]), 10, nullptr);
      times.push_back(seconds_since(start) * 1e3);
      std::int64_t common = 0;
      for (const auto& a : hits)
        for (const auto& b : answers[std::size_t(q)]) common += a.index == b.index;
      overlaps += double(common) / double(std::max<std::size_t>(1, hits.size()));
    }
    exhaustive_ms = percentile(times, 0.5);
    overlap = overlaps / double(exhaustive_count);
  }
  nlohmann::ordered_json batch = nullptr;
  if (o.batch > 1 && o.images <= o.exhaustive_max_images) {
    const auto exhaustive = index->searcher(GallerySide::Images, 0);
    std::vector<EncodedQuery> encoded;
    for (std::int64_t q = 0; q < o.batch; ++q)
      encoded.push_back(index->text_query(queries[std::size_t(q % o.queries)]));
    auto start = Clock::now();
    std::vector<std::vector<Hit>> one_by_one;
    for (const auto& query : encoded) one_by_one.push_back(exhaustive->search(query, 10, nullptr));
    const double sequential_ms = seconds_since(start) * 1e3;
    start = Clock::now();
    const auto together = exhaustive->search_many(encoded, 10, nullptr);
    const double together_ms = seconds_since(start) * 1e3;
    double max_diff = 0;
    bool same_order = true;
    for (std::size_t q = 0; q < encoded.size(); ++q)
      for (std::size_t r = 0; r < one_by_one[q].size(); ++r) {
        max_diff = std::max(max_diff, std::abs(one_by_one[q][r].score - together[q][r].score));
        same_order = same_order && one_by_one[q][r].index == together[q][r].index;
      }
    batch = {{"queries", o.batch},         {"sequential_ms", sequential_ms},
             {"together_ms", together_ms}, {"speedup", sequential_ms / together_ms},
             {"max_abs_diff", max_diff},   {"same_top10", same_order}};
  }
  nlohmann::ordered_json json{
      {"bench", "search"},
      {"images", index->num_images()},
      {"embed", used.embed_size},
      {"regions", o.regions},
      {"feature_dim", o.feature_dim},
      {"mode", to_string(used.mode)},
      {"steps", used.iteration_steps},
      {"captions", o.captions},
      {"shortlist", shortlist},
      {"prefilter", rerank ? rerank->prefilter() : 0},
      {"step1", rerank ? rerank->step1() : 0},
      {"codes", index->has_codes(GallerySide::Images)},
      {"faiss", index->faiss_factory()},
      {"store", o.store},
      {"memory_halves", o.memory_halves},
      {"threads", thread_count()},
      {"device", o.device},
      {"build_s", build_s},
      {"generate_s", generate_s},
      {"images_per_s", double(o.images) / images_s},
      {"faiss_build_s", faiss_s},
      {"index_bytes", bytes_of(index_dir, {".faiss", "_globals.bin"})},
      {"codes_bytes", bytes_of(index_dir, {"_codes.bin", "_grams.bin", "_codebook.bin"})},
      {"residual_bytes", bytes_of(index_dir, {"_residuals.bin"})},
      {"exact_store", index->store()->exact()},
      {"commit_every", o.commit_every},
      {"store_bytes", bytes_of(index_dir, {"regions.bin", "words.bin", "word_offsets.bin", "_halves.bin"})},
      {"open_ms", open_ms},
      {"first_query_ms", latencies.front()},
      {"p50_ms", percentile(latencies, 0.5)},
      {"p95_ms", percentile(latencies, 0.95)},
      {"p99_ms", percentile(latencies, 0.99)},
      {"encode_ms_mean", encode_ms / double(o.queries)},
      {"stage1_ms_mean", stage1_ms / double(o.queries)},
      {"coded_ms_mean", coded_ms / double(o.queries)},
      {"exact_step1_ms_mean", exact_step1_ms / double(o.queries)},
      {"stage2_ms_mean", stage2_mean_ms},
      {"stage2_floor_ms", floor_ms},
      {"stage2_vs_floor", floor_ms > 0 ? nlohmann::ordered_json(stage2_mean_ms / floor_ms) : nlohmann::ordered_json()},
      {"queries", o.queries},
      {"qps", double(o.queries) / queries_s},
      {"peak_rss_mb", peak_rss_mb()},
      {"exhaustive_ms", exhaustive_ms},
      {"exhaustive_queries", exhaustive_count},
      {"top10_overlap", overlap},
      {"image_queries", image_side},
      {"batch", batch}};
  if (!exhaustive_ms.is_null())
    json["speedup_vs_exhaustive"] = exhaustive_ms.get<double>() / json["p50_ms"].get<double>();
  return json.dump();
}

}  // namespace imram
