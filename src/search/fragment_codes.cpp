#include "imram/search/fragment_codes.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/impl/FaissException.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "imram/engine/matching.h"
#include "imram/error.h"
#include "imram/search/rerank.h"
#include "imram/util/interruption.h"
#include "imram/util/stopwatch.h"

namespace imram {

std::int64_t auto_codebook_size(std::int64_t fragments) {
  if (fragments <= 0) return 0;
  const auto wanted = 8.0 * std::sqrt(double(fragments));
  std::int64_t size = 16;
  while (size * 2 <= wanted && size < 8192) size *= 2;
  return std::min(size, fragments);
}

torch::Tensor train_codebook(const torch::Tensor& sample, std::int64_t centroids, std::uint64_t seed) {
  const auto rows = sample.to(torch::kFloat32).contiguous();
  const auto n = rows.size(0), d = rows.size(1);
  if (centroids < 1 || centroids > n)
    throw Error("a codebook of " + std::to_string(centroids) + " centroids needs at least as many fragments; " +
                std::to_string(n) + " given");
  // As many centroids as rows: k-means would return the rows (FAISS would split the clusters of
  // repeated rows apart instead), so they are the codebook, and every fragment its own centroid.
  if (centroids == n) return rows.clone();
  auto codebook = torch::empty({centroids, d}, torch::kFloat32);
  try {
    faiss::ClusteringParameters parameters;
    parameters.niter = 10;
    parameters.seed = int(seed & 0x7fffffff);
    // The caller samples; FAISS's own subsampling would take another sample of that.
    parameters.max_points_per_centroid = int(std::max<std::int64_t>(256, n / centroids + 1));
    parameters.min_points_per_centroid = 1;
    faiss::Clustering clustering(int(d), int(centroids), parameters);
    faiss::IndexFlatL2 assign(d);
    clustering.train(faiss::Index::idx_t(n), rows.data_ptr<float>(), assign);
    std::copy(clustering.centroids.begin(), clustering.centroids.end(), codebook.data_ptr<float>());
  } catch (const faiss::FaissException& e) {
    throw Error(std::string("FAISS k-means failed: ") + e.what());
  }
  return codebook;
}

torch::Tensor nearest_centroids(const torch::Tensor& codebook, const torch::Tensor& rows) {
  torch::NoGradGuard no_grad;
  const auto centroids = codebook.to(torch::kFloat32).contiguous();
  const auto squared = centroids.pow(2).sum(1);
  auto codes = torch::empty({rows.size(0)}, torch::kInt32);
  // |x - c|^2 = |x|^2 - 2 x.c + |c|^2: the first term is the row's own, the rest one product.
  constexpr std::int64_t kBlock = 4096;
  for (std::int64_t begin = 0; begin < rows.size(0); begin += kBlock) {
    const auto block = rows.narrow(0, begin, std::min(kBlock, rows.size(0) - begin)).to(torch::kFloat32);
    const auto distances = torch::addmm(squared.unsqueeze(0), block, centroids.t(), 1.0, -2.0);
    codes.narrow(0, begin, block.size(0)).copy_(distances.argmin(1));
  }
  return codes;
}

CodedFirstStep::CodedFirstStep(ImramModel model, std::shared_ptr<const ItemStore> store, GallerySide side)
    : model_(std::move(model)), store_(std::move(store)), side_(side) {
  if (!store_->keeps_codes(side_ == GallerySide::Images))
    throw Error(std::string("the store keeps no codes of its ") + (side_ == GallerySide::Images ? "regions" : "words"));
}

namespace {

// Candidates per pass: the looked-up raw scores and attention weights of a pass stay within a
// few tens of megabytes (about 2,000 images of 36 regions against a 14-word query).
constexpr std::int64_t kPassFragmentPairs = std::int64_t(1) << 20;

}  // namespace

std::vector<double> CodedFirstStep::scores(const EncodedQuery& query, const std::vector<std::int64_t>& ids) const {
  torch::NoGradGuard no_grad;
  const auto& model = *model_;
  const auto& config = model.config;
  const bool images = side_ == GallerySide::Images;
  check_query_side(query, side_);
  // The query's fragments, as the engine sees them: a caption's real words, or an image's regions.
  const auto fragments = (images ? query.caption.words : query.image.regions).to(torch::kCPU, torch::kFloat32);
  auto own = fragments[0];
  if (images) own = own.narrow(0, 0, query.caption.lengths[0].item<std::int64_t>());
  // An image's padding regions take no part in a match, on either side of it: left out.
  if (!images && query.image.region_mask.defined())
    own = own.index_select(0, query.image.region_mask[0].to(torch::kCPU).nonzero().squeeze(1));
  own = own.contiguous();
  const auto n_own = own.size(0);
  const auto own_gram = torch::mm(own, own.t()).unsqueeze(0);      // (1, f, f)
  const auto own_squared = own.pow(2).sum(1).unsqueeze(0);         // (1, f)
  const auto own_mask = torch::ones({1, n_own}, torch::kFloat32);  // (1, f)
  // The query's products with every centroid: (centroids, f).
  const auto table = torch::mm(store_->codebook(images), own.t()).contiguous();

  std::vector<double> out;
  out.reserve(ids.size());
  const auto per_item = std::max<std::int64_t>(1, n_own * (images ? store_->regions_per_image() : 16));
  const auto pass = std::max<std::int64_t>(1, kPassFragmentPairs / per_item);
  for (std::size_t begin = 0; begin < ids.size(); begin += std::size_t(pass)) {
    const std::vector<std::int64_t> part(ids.begin() + std::ptrdiff_t(begin),
                                         ids.begin() + std::ptrdiff_t(std::min(ids.size(), begin + std::size_t(pass))));
    const auto items = images ? store_->coded_images(part) : store_->coded_captions(part);
    const auto n = items.codes.size(0), f = items.codes.size(1);
    const auto positions = torch::arange(f, torch::kInt64).unsqueeze(0);
    const auto real = positions < items.lengths.unsqueeze(1);  // (n, f)
    const auto item_mask = real.to(torch::kFloat32);
    const auto item_squared = items.grams.diagonal(0, 1, 2).to(torch::kFloat32);  // (n, f): |fragment|^2
    // The query's fragment q against candidate i's fragment c is table[codes[i, c], q]: the
    // candidates' codes index the context of a match they are the context of, else its queries.
    const FirstStepRaw as_context{{}, table, items.codes, true}, as_queries{{}, table, items.codes, false};
    auto total = torch::zeros({n}, torch::kFloat32);
    // Text-IMRAM: the caption's words attend over the image's regions; image-IMRAM the reverse.
    const bool caption_is_query = images;  // the query is a caption when the gallery holds images
    if (config.uses_text_direction()) {
      if (caption_is_query)  // the query's words over each candidate's regions: B = n, A = 1
        total += first_step_from_products(as_context, items.grams, own_mask, own_squared, {}, config).select(1, 0);
      else  // each candidate's words over the query image's regions: B = 1, A = n
        total += first_step_from_products(as_queries, own_gram, item_mask, item_squared, {}, config).select(0, 0);
    }
    if (config.uses_image_direction()) {
      if (caption_is_query)  // each candidate's regions over the query's words: B = 1, A = n
        total += first_step_from_products(as_queries, own_gram, item_mask, item_squared, {}, config).select(0, 0);
      else  // the query image's regions over each candidate's words: B = n, A = 1
        total += first_step_from_products(as_context, items.grams, own_mask, own_squared, real.logical_not(), config)
                     .select(1, 0);
    }
    const auto values = total.to(torch::kFloat64).contiguous();
    out.insert(out.end(), values.data_ptr<double>(), values.data_ptr<double>() + n);
    throw_if_interrupted();
  }
  return out;
}

std::vector<Hit> CodedFirstStep::best(const EncodedQuery& query, const std::vector<std::int64_t>& ids, std::int64_t k,
                                      SearchStats* stats) const {
  const Stopwatch watch;
  const auto values = scores(query, ids);
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      throw Error(std::string(side_ == GallerySide::Images ? "image " : "caption ") + std::to_string(ids[i]) +
                  ": its coded first step is not a number to rank by: the index's codes hold NaN or infinite values");
  // top_hits breaks ties by position: the candidates in id order make that the lower id.
  std::vector<std::size_t> order(ids.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return ids[a] < ids[b]; });
  std::vector<double> sorted_values(values.size());
  for (std::size_t i = 0; i < order.size(); ++i) sorted_values[i] = values[order[i]];
  auto hits = top_hits(sorted_values, k);
  for (auto& hit : hits) hit.index = ids[order[std::size_t(hit.index)]];
  if (stats) {
    const auto ms = watch.milliseconds();
    stats->stage2_ms += ms;
    stats->coded_ms += ms;
  }
  return hits;
}

}  // namespace imram
