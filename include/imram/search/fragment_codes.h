#pragma once
// The codes of an index's fragments (docs/index.md#codes): every encoded region and word as the
// nearest centroid of a codebook learned by k-means, and every item's Gram matrix of its stored
// fragments. IMRAM's first step needs of a candidate only the raw scores q0 . C and the context's
// Gram matrix (engine/matching.h, first_step_from_products); with codes the raw scores are
// lookups in one small table, the query's fragments times the centroids, so the first step of
// tens of thousands of candidates reads a few kilobytes of each instead of its fragments. The
// ranking is approximate (a fragment is replaced by its centroid); it is exact when every
// fragment is its own centroid, which the tests hold it to.
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "imram/model/imram.h"
#include "imram/search/item_store.h"
#include "imram/search/searcher.h"

namespace imram {

// An automatic codebook: about eight centroids per square root of the fragments, a power of two
// between 16 and 8,192, never more than the fragments themselves. Among 100,000 synthetic images
// (1.6 million regions) 8,192 centroids kept the ranks of exact step 1's cascade where 1,024 did
// not (docs/search.md#codes-for-step-1).
std::int64_t auto_codebook_size(std::int64_t fragments);

// k-means (FAISS) of `sample` (n, d) float32 into `centroids` rows, deterministic for a seed.
torch::Tensor train_codebook(const torch::Tensor& sample, std::int64_t centroids, std::uint64_t seed = 1234);

// Each row's nearest centroid (Euclidean), (n) int32.
torch::Tensor nearest_centroids(const torch::Tensor& codebook, const torch::Tensor& rows);

// IMRAM's first step of queries against many candidates from the store's codes (ItemStore::
// coded_images / coded_captions): the score's first term, both directions in full-IMRAM, each
// as first_step_from_products computes it from the looked-up raw scores.
class CodedFirstStep {
 public:
  CodedFirstStep(ImramModel model, std::shared_ptr<const ItemStore> store, GallerySide side);
  GallerySide side() const { return side_; }
  // The first step of `query` against each of `ids`, in their order.
  std::vector<double> scores(const EncodedQuery& query, const std::vector<std::int64_t>& ids) const;
  // The k best of `ids` by that score, best first (ties: the lower id); stats->stage2_ms grows.
  std::vector<Hit> best(const EncodedQuery& query, const std::vector<std::int64_t>& ids, std::int64_t k,
                        SearchStats* stats) const;

 private:
  ImramModel model_;
  std::shared_ptr<const ItemStore> store_;
  GallerySide side_;
};

}  // namespace imram
