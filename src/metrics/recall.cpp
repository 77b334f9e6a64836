#include "imram/metrics/recall.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "imram/error.h"

namespace imram {

namespace {

template <class Body>
void parallel_for(std::int64_t n, int threads, Body body) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<std::int64_t>(threads, std::max<std::int64_t>(1, n / 64)));
  if (threads <= 1) {
    body(0, n);
    return;
  }
  std::vector<std::thread> workers;
  const std::int64_t chunk = (n + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const std::int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin < end) workers.emplace_back(body, begin, end);
  }
  for (auto& worker : workers) worker.join();
}

DirectionMetrics summarize(const std::vector<std::int64_t>& ranks) {
  DirectionMetrics m;
  const double n = static_cast<double>(ranks.size());
  std::int64_t below1 = 0, below5 = 0, below10 = 0;
  double total = 0;
  for (auto r : ranks) {
    below1 += r < 1;
    below5 += r < 5;
    below10 += r < 10;
    total += static_cast<double>(r);
  }
  m.r1 = 100.0 * static_cast<double>(below1) / n;
  m.r5 = 100.0 * static_cast<double>(below5) / n;
  m.r10 = 100.0 * static_cast<double>(below10) / n;
  m.meanr = total / n + 1.0;
  std::vector<std::int64_t> sorted = ranks;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t half = sorted.size() / 2;
  const double median = sorted.size() % 2 ? static_cast<double>(sorted[half])
                                          : 0.5 * static_cast<double>(sorted[half - 1] + sorted[half]);
  m.medr = std::floor(median) + 1.0;
  return m;
}

}  // namespace

int captions_per_image_for(std::int64_t images, std::int64_t captions, const std::string& source) {
  if (images > 0 && captions == 5 * images) return 5;
  if (images > 0 && captions == images) return 1;
  throw Error(source + ": " + std::to_string(images) + " images and " + std::to_string(captions) +
              " captions; expected 5 captions per image (or 1)");
}

void require_finite_scores(const double* sims, std::int64_t images, std::int64_t captions, const std::string& source) {
  const std::int64_t n = images * captions;
  for (std::int64_t k = 0; k < n; ++k)
    if (!std::isfinite(sims[k]))
      throw Error(source + ": score of image " + std::to_string(k / captions) + " and caption " +
                  std::to_string(k % captions) + " is " + std::to_string(sims[k]) +
                  "; retrieval metrics need finite scores");
}

RetrievalRanks retrieval_ranks(const double* sims, std::int64_t images, std::int64_t captions, int captions_per_image,
                               int threads) {
  // A NaN compares false with everything, so every item would rank first: 100 % recall.
  require_finite_scores(sims, images, captions, "score matrix");
  RetrievalRanks ranks;
  ranks.i2t.resize(static_cast<std::size_t>(images));
  ranks.t2i.resize(static_cast<std::size_t>(captions));
  parallel_for(images, threads, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const double* row = sims + i * captions;
      double best_own = row[i * captions_per_image];
      for (int c = 1; c < captions_per_image; ++c) best_own = std::max(best_own, row[i * captions_per_image + c]);
      // A tie with another image's caption counts against the image: a collapsed model that
      // scores every pair alike must rank last, not first (it gave R@1 = 100).
      std::int64_t better = 0;
      for (std::int64_t j = 0; j < i * captions_per_image; ++j) better += row[j] >= best_own;
      for (std::int64_t j = (i + 1) * captions_per_image; j < captions; ++j) better += row[j] >= best_own;
      ranks.i2t[static_cast<std::size_t>(i)] = better;
    }
  });
  // Column access is strided; walk rows and count per caption instead, one pass per block.
  parallel_for(captions, threads, [&](std::int64_t begin, std::int64_t end) {
    std::vector<double> own(static_cast<std::size_t>(end - begin));
    for (std::int64_t j = begin; j < end; ++j)
      own[static_cast<std::size_t>(j - begin)] = sims[(j / captions_per_image) * captions + j];
    std::vector<std::int64_t> better(static_cast<std::size_t>(end - begin), 0);
    for (std::int64_t i = 0; i < images; ++i) {
      const double* row = sims + i * captions;
      for (std::int64_t j = begin; j < end; ++j)
        better[static_cast<std::size_t>(j - begin)] += row[j] >= own[static_cast<std::size_t>(j - begin)];
    }
    // Ties count against the caption too; its own image's score, equal to itself, does not.
    for (auto& count : better) --count;
    std::copy(better.begin(), better.end(), ranks.t2i.begin() + begin);
  });
  return ranks;
}

RetrievalMetrics metrics_from_ranks(const RetrievalRanks& ranks) {
  RetrievalMetrics m;
  m.i2t = summarize(ranks.i2t);
  m.t2i = summarize(ranks.t2i);
  m.rsum = m.i2t.r1 + m.i2t.r5 + m.i2t.r10 + m.t2i.r1 + m.t2i.r5 + m.t2i.r10;
  return m;
}

RetrievalMetrics compute_metrics(const double* sims, std::int64_t images, std::int64_t captions, int captions_per_image,
                                 int threads) {
  return metrics_from_ranks(retrieval_ranks(sims, images, captions, captions_per_image, threads));
}

RetrievalMetrics compute_metrics_fold5(const double* sims, std::int64_t images, std::int64_t captions,
                                       int captions_per_image, int threads) {
  if (images % 5 != 0) throw Error("--fold5 needs a number of images divisible by 5, got " + std::to_string(images));
  const std::int64_t fold_images = images / 5, fold_captions = captions / 5;
  RetrievalMetrics mean;
  std::vector<double> block(static_cast<std::size_t>(fold_images * fold_captions));
  for (int fold = 0; fold < 5; ++fold) {
    for (std::int64_t i = 0; i < fold_images; ++i) {
      const double* src = sims + (fold * fold_images + i) * captions + fold * fold_captions;
      std::copy(src, src + fold_captions, block.begin() + i * fold_captions);
    }
    const RetrievalMetrics m = compute_metrics(block.data(), fold_images, fold_captions, captions_per_image, threads);
    for (auto [dst, src] : {std::pair{&mean.i2t, &m.i2t}, std::pair{&mean.t2i, &m.t2i}}) {
      dst->r1 += src->r1 / 5;
      dst->r5 += src->r5 / 5;
      dst->r10 += src->r10 / 5;
      dst->medr += src->medr / 5;
      dst->meanr += src->meanr / 5;
    }
    mean.rsum += m.rsum / 5;
  }
  return mean;
}

std::string metrics_json(const RetrievalMetrics& metrics) {
  auto direction = [](const DirectionMetrics& d) {
    return nlohmann::ordered_json{{"r1", d.r1}, {"r5", d.r5}, {"r10", d.r10}, {"medr", d.medr}, {"meanr", d.meanr}};
  };
  nlohmann::ordered_json json{{"i2t", direction(metrics.i2t)}, {"t2i", direction(metrics.t2i)}, {"rsum", metrics.rsum}};
  return json.dump();
}

std::string metrics_table(const RetrievalMetrics& metrics) {
  char buffer[512];
  std::snprintf(buffer, sizeof buffer,
                "              R@1     R@5    R@10    medr    meanr\n"
                "image->text %6.2f  %6.2f  %6.2f  %6.1f  %7.2f\n"
                "text->image %6.2f  %6.2f  %6.2f  %6.1f  %7.2f\n"
                "rsum %.2f\n",
                metrics.i2t.r1, metrics.i2t.r5, metrics.i2t.r10, metrics.i2t.medr, metrics.i2t.meanr, metrics.t2i.r1,
                metrics.t2i.r5, metrics.t2i.r10, metrics.t2i.medr, metrics.t2i.meanr, metrics.rsum);
  return buffer;
}

RetrievalMetrics chance_metrics(std::int64_t images, std::int64_t captions, int captions_per_image) {
  auto none_of_own_in_top = [&](int k) {
    // prod_{i<k} (M - cpi - i) / (M - i): the top k are all other images' captions.
    double p = 1;
    for (int i = 0; i < k && i < captions; ++i)
      p *= std::max(0.0, double(captions - captions_per_image - i)) / double(captions - i);
    return p;
  };
  RetrievalMetrics m;
  m.i2t.r1 = 100 * (1 - none_of_own_in_top(1));
  m.i2t.r5 = 100 * (1 - none_of_own_in_top(5));
  m.i2t.r10 = 100 * (1 - none_of_own_in_top(10));
  m.t2i.r1 = 100 * std::min(1.0, 1.0 / double(images));
  m.t2i.r5 = 100 * std::min(1.0, 5.0 / double(images));
  m.t2i.r10 = 100 * std::min(1.0, 10.0 / double(images));
  m.i2t.medr = std::floor(double(captions) / double(captions_per_image + 1)) + 1;
  m.t2i.medr = std::floor(double(images - 1) / 2) + 1;
  m.i2t.meanr = double(captions - captions_per_image) / double(captions_per_image + 1) + 1;
  m.t2i.meanr = double(images - 1) / 2 + 1;
  m.rsum = m.i2t.r1 + m.i2t.r5 + m.i2t.r10 + m.t2i.r1 + m.t2i.r5 + m.t2i.r10;
  return m;
}

std::string metrics_table_with_chance(const RetrievalMetrics& metrics, std::int64_t images, std::int64_t captions,
                                      int captions_per_image) {
  const auto chance = chance_metrics(images, captions, captions_per_image);
  char buffer[768];
  std::snprintf(buffer, sizeof buffer,
                "                       R@1     R@5    R@10    medr    meanr\n"
                "image->text  model  %6.2f  %6.2f  %6.2f  %6.1f  %7.2f\n"
                "             chance %6.2f  %6.2f  %6.2f  %6.1f  %7.2f\n"
                "text->image  model  %6.2f  %6.2f  %6.2f  %6.1f  %7.2f\n"
                "             chance %6.2f  %6.2f  %6.2f  %6.1f  %7.2f\n"
                "rsum %.2f (chance %.2f)\n",
                metrics.i2t.r1, metrics.i2t.r5, metrics.i2t.r10, metrics.i2t.medr, metrics.i2t.meanr, chance.i2t.r1,
                chance.i2t.r5, chance.i2t.r10, chance.i2t.medr, chance.i2t.meanr, metrics.t2i.r1, metrics.t2i.r5,
                metrics.t2i.r10, metrics.t2i.medr, metrics.t2i.meanr, chance.t2i.r1, chance.t2i.r5, chance.t2i.r10,
                chance.t2i.medr, chance.t2i.meanr, metrics.rsum, chance.rsum);
  return buffer;
}

RetrievalMetrics metrics_of_matrix(const double* sims, std::int64_t images, std::int64_t captions, bool fold5,
                                   const std::string& source, int threads) {
  const int per_image = captions_per_image_for(images, captions, source);
  require_finite_scores(sims, images, captions, source);
  return fold5 ? compute_metrics_fold5(sims, images, captions, per_image, threads)
               : compute_metrics(sims, images, captions, per_image, threads);
}

}  // namespace imram
