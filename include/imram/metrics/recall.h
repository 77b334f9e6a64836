#pragma once
// The standard cross-modal retrieval protocol (R@K, median and mean rank, both directions).
#include <cstdint>
#include <string>
#include <vector>

namespace imram {

struct DirectionMetrics {
  double r1 = 0, r5 = 0, r10 = 0;  // percent of queries whose match ranks < K
  double medr = 0;                 // floor(median 0-based rank) + 1
  double meanr = 0;                // mean 0-based rank + 1
};

struct RetrievalMetrics {
  DirectionMetrics i2t;  // image query, rank of its best caption
  DirectionMetrics t2i;  // caption query, rank of its image
  double rsum = 0;       // sum of the six R@K
};

struct RetrievalRanks {
  std::vector<std::int64_t> i2t;  // per image: best 0-based rank among its captions
  std::vector<std::int64_t> t2i;  // per caption: 0-based rank of its image
};

// sims is row-major (images x captions); caption j belongs to image j / captions_per_image.
// A tie counts in the query's favour (rank = number of strictly better candidates).
RetrievalRanks retrieval_ranks(const double* sims, std::int64_t images, std::int64_t captions, int captions_per_image,
                               int threads = 0);
RetrievalMetrics metrics_from_ranks(const RetrievalRanks& ranks);
RetrievalMetrics compute_metrics(const double* sims, std::int64_t images, std::int64_t captions, int captions_per_image,
                                 int threads = 0);
// COCO 1K protocol: five blocks of images/5 images with their captions, metrics averaged.
RetrievalMetrics compute_metrics_fold5(const double* sims, std::int64_t images, std::int64_t captions,
                                       int captions_per_image, int threads = 0);
// `imram metrics` of a whole matrix: the captions per image from its shape, every score finite
// (both checked, naming `source`), then the protocol (fold5: COCO 1K).
RetrievalMetrics metrics_of_matrix(const double* sims, std::int64_t images, std::int64_t captions, bool fold5,
                                   const std::string& source, int threads = 0);

// The JSON of `imram metrics --json` and `imram eval --json`, one line.
std::string metrics_json(const RetrievalMetrics& metrics);
std::string metrics_table(const RetrievalMetrics& metrics);
// The same table with what random scores would give next to each direction.
std::string metrics_table_with_chance(const RetrievalMetrics& metrics, std::int64_t images, std::int64_t captions,
                                      int captions_per_image);
// Expected R@K of random scores: text->image K/N; image->text the chance that one of the
// image's captions lands in the top K of M.
RetrievalMetrics chance_metrics(std::int64_t images, std::int64_t captions, int captions_per_image);

// Throws naming `source` and the first NaN or infinite score. The metrics check it themselves.
void require_finite_scores(const double* sims, std::int64_t images, std::int64_t captions, const std::string& source);

// captions / images must be 5 or 1; throws otherwise naming `source`.
int captions_per_image_for(std::int64_t images, std::int64_t captions, const std::string& source);

}  // namespace imram
