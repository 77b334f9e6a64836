#include "imram/search/faiss_shortlist.h"

#include <ATen/Parallel.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include "imram/engine/fragment_products.h"
#include "imram/error.h"
#include "imram/util/blas.h"
#include "imram/util/stopwatch.h"

namespace imram {

namespace {

torch::Tensor as_faiss_input(const torch::Tensor& vectors) {
  return vectors.to(torch::kCPU, torch::kFloat32).contiguous();
}

// FAISS's messages open with its function and source position ("Error in ... at
// ./faiss/impl/index_read.cpp:70: ..."), which tell a user nothing: the text after them.
std::string faiss_message(const faiss::FaissException& e) {
  std::string text = e.what();
  const auto at = text.rfind("Error in ", 0) == 0 ? text.find(" at ") : std::string::npos;
  const auto rest = at == std::string::npos ? std::string::npos : text.find(": ", at);
  if (rest != std::string::npos) text = text.substr(rest + 2);
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

// How an inverted file's lists hold their vectors, where imram scans them itself: float32 as
// they are (IVFn,Flat) or float16 (IVFn,SQfp16), optionally as residuals from their list's
// centroid; inner product only.
struct ScannedLists {
  const faiss::IndexIVF* index;
  bool half;
  bool by_residual;
};

std::optional<ScannedLists> scanned_lists(const faiss::Index* index) {
  const auto* inverted = dynamic_cast<const faiss::IndexIVF*>(index);
  if (!inverted || inverted->metric_type != faiss::METRIC_INNER_PRODUCT) return std::nullopt;
  if (dynamic_cast<const faiss::IndexIVFFlat*>(inverted)) return ScannedLists{inverted, false, false};
  const auto* quantized = dynamic_cast<const faiss::IndexIVFScalarQuantizer*>(inverted);
  if (quantized && quantized->sq.qtype == faiss::ScalarQuantizer::QT_fp16)
    return ScannedLists{inverted, true, quantized->by_residual};
  return std::nullopt;
}

// The best n of an inverted file for one query, as FAISS's own search finds them (the same
// lists, the same inner products up to rounding), with each probed list scanned by one BLAS
// matrix-vector product (float32) or the engine's float16 dot kernel, and the lists split over
// the threads: Debian's generic FAISS scans them with an inner-product loop compiled without
// SIMD (one query at 1,000,000 x 256, 32 of 1,024 lists: docs/search.md#latency-of-the-default-store).
// `list_scores`: the query's inner product with each probed list's centroid, which a residual
// code adds back. Ties go to the lower id.
std::vector<Hit> scan_lists(const ScannedLists& scanned, const float* query, std::int64_t n,
                            const std::vector<faiss::Index::idx_t>& lists, const std::vector<float>& list_scores) {
  const auto& index = *scanned.index;
  std::vector<std::size_t> offsets{0};
  for (const auto list : lists) offsets.push_back(offsets.back() + (list < 0 ? 0 : index.invlists->list_size(list)));
  std::vector<float> scores(offsets.back());
  std::vector<faiss::Index::idx_t> ids(offsets.back());
  const int dim = int(index.d), one_step = 1;
  const float one = 1.0f, zero = 0.0f;
  const auto query_row = torch::from_blob(const_cast<float*>(query), {1, 1, dim}, torch::kFloat32);
  at::parallel_for(0, std::int64_t(lists.size()), 1, [&](std::int64_t begin, std::int64_t end) {
    for (auto l = std::size_t(begin); l < std::size_t(end); ++l) {
      const int size = int(offsets[l + 1] - offsets[l]);
      if (size == 0) continue;
      faiss::InvertedLists::ScopedCodes codes(index.invlists, std::size_t(lists[l]));
      faiss::InvertedLists::ScopedIds list_ids(index.invlists, std::size_t(lists[l]));
      float* list_out = scores.data() + offsets[l];
      if (scanned.half) {
        const auto rhs = torch::from_blob(const_cast<std::uint8_t*>(codes.get()), {1, size, dim}, torch::kHalf);
        auto out = torch::from_blob(list_out, {1, 1, size}, torch::kFloat32);
        fragment_dots(query_row, rhs, out);
      } else {
        // Row-major (size x dim) vectors are BLAS's column-major (dim x size): scores = vectors^T q.
        sgemv_("T", &dim, &size, &one, reinterpret_cast<const float*>(codes.get()), &dim, query, &one_step, &zero,
               list_out, &one_step);
      }
      if (scanned.by_residual)
        for (int i = 0; i < size; ++i) list_out[i] += list_scores[l];
      std::copy(list_ids.get(), list_ids.get() + size, ids.begin() + std::ptrdiff_t(offsets[l]));
    }
  });
  std::vector<std::size_t> order(scores.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const auto better = [&](std::size_t a, std::size_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && ids[a] < ids[b]);
  };
  const auto kept = std::min(order.size(), std::size_t(n));
  std::nth_element(order.begin(), order.begin() + std::ptrdiff_t(kept), order.end(), better);
  std::sort(order.begin(), order.begin() + std::ptrdiff_t(kept), better);
  std::vector<Hit> hits;
  hits.reserve(kept);
  for (std::size_t i = 0; i < kept; ++i) hits.push_back({ids[order[i]], scores[order[i]], double(scores[order[i]])});
  return hits;
}

}  // namespace

FaissShortlist::FaissShortlist(std::shared_ptr<const faiss::Index> index, GallerySide side)
    : index_(std::move(index)), side_(side) {
  // Below this many queries FAISS scans a flat index with its own inner product, which Debian's
  // generic build compiles without SIMD; through BLAS one query's scan of 100,000 x 128 floats
  // took 11 ms against 18-20 (docs/search.md). Process-wide, as FAISS keeps it.
  faiss::distance_compute_blas_threshold = 1;
}

std::int64_t FaissShortlist::size() const { return index_->ntotal; }

std::vector<std::vector<Hit>> FaissShortlist::search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                                          SearchStats* stats, const SearchParams& params) const {
  const Stopwatch watch;
  std::vector<torch::Tensor> vectors;
  for (const auto& query : queries) {
    if (!query.global.defined())
      throw Error("a FAISS shortlist needs the query's global embedding (a model with a global head)");
    if (query.searches() != side_)
      throw Error(side_ == GallerySide::Images ? "this index ranks images: give a text query"
                                               : "this index ranks captions: give an image query");
    vectors.push_back(query.global.reshape({1, -1}));
  }
  std::vector<std::vector<Hit>> answers(queries.size());
  const auto n = std::min<std::int64_t>(k, index_->ntotal);
  if (n <= 0 || queries.empty()) return answers;
  const auto batch = as_faiss_input(torch::cat(vectors));
  if (batch.size(1) != index_->d)
    throw Error("query embedding has " + std::to_string(batch.size(1)) + " dimensions, the FAISS index " +
                std::to_string(index_->d));
  const auto count = std::size_t(batch.size(0)) * std::size_t(n);
  std::vector<float> distances(count);
  std::vector<faiss::Index::idx_t> labels(count);
  // Per-call parameters for the index types that take them; the others search as they are.
  faiss::SearchParametersIVF ivf;
  faiss::SearchParametersHNSW hnsw;
  hnsw.efSearch = params.ef_search > 0 ? params.ef_search : kDefaultEfSearch;
  faiss::SearchParametersPreTransform transformed;
  const faiss::SearchParameters* chosen = nullptr;
  const faiss::Index* searched = index_.get();
  if (const auto* pre = dynamic_cast<const faiss::IndexPreTransform*>(searched)) searched = pre->index;
  if (const auto* inverted = dynamic_cast<const faiss::IndexIVF*>(searched)) {
    ivf.nprobe = std::size_t(params.nprobe > 0 ? params.nprobe
                                               : default_nprobe(n, std::int64_t(inverted->nlist), index_->ntotal));
    chosen = &ivf;
  }
  if (const auto scanned = scanned_lists(index_.get())) {
    const auto probes = std::min<std::size_t>(ivf.nprobe, scanned->index->nlist);
    const auto rows = std::size_t(batch.size(0));
    std::vector<float> list_scores(rows * probes);
    std::vector<faiss::Index::idx_t> lists(rows * probes);
    try {
      scanned->index->quantizer->search(batch.size(0), batch.data_ptr<float>(), faiss::Index::idx_t(probes),
                                        list_scores.data(), lists.data());
    } catch (const faiss::FaissException& e) {
      throw Error("FAISS search failed: " + faiss_message(e));
    }
    for (std::size_t q = 0; q < rows; ++q)
      answers[q] = scan_lists(
          *scanned, batch.data_ptr<float>() + q * std::size_t(index_->d), n,
          {lists.begin() + std::ptrdiff_t(q * probes), lists.begin() + std::ptrdiff_t((q + 1) * probes)},
          {list_scores.begin() + std::ptrdiff_t(q * probes), list_scores.begin() + std::ptrdiff_t((q + 1) * probes)});
    if (stats) stats->stage1_ms += watch.milliseconds();
    return answers;
  }
  if (dynamic_cast<const faiss::IndexHNSW*>(searched)) chosen = &hnsw;
  if (chosen && searched != index_.get()) {
    transformed.index_params = const_cast<faiss::SearchParameters*>(chosen);
    chosen = &transformed;
  }
  try {
    index_->search(batch.size(0), batch.data_ptr<float>(), n, distances.data(), labels.data(), chosen);
  } catch (const faiss::FaissException& e) {
    throw Error("FAISS search failed: " + faiss_message(e));
  }
  for (std::size_t q = 0; q < queries.size(); ++q)
    for (std::size_t i = q * std::size_t(n); i < (q + 1) * std::size_t(n); ++i)
      if (labels[i] >= 0)  // approximate indexes may return fewer than asked
        answers[q].push_back({labels[i], distances[i], double(distances[i])});
  if (stats) stats->stage1_ms += watch.milliseconds();
  return answers;
}

std::int64_t default_nprobe(std::int64_t k, std::int64_t lists, std::int64_t items) {
  if (lists < 1 || items < 1) return FaissShortlist::kDefaultNprobe;
  const auto needed = (2 * k * lists + items - 1) / items;  // ceil(2k / (items / lists))
  return std::min(lists, std::max<std::int64_t>(FaissShortlist::kDefaultNprobe, needed));
}

std::string default_faiss_factory(std::int64_t vectors, std::int64_t dim) {
  if (double(vectors) * double(std::max<std::int64_t>(dim, 1)) <= kFlatScanFloats) return "Flat";
  std::int64_t lists = 64;
  while (lists < 1024 && double(lists * 2) <= 4 * std::sqrt(double(vectors))) lists *= 2;
  return "IVF" + std::to_string(lists) + ",SQfp16";
}

std::shared_ptr<faiss::Index> build_faiss_index(const std::string& factory, const torch::Tensor& vectors) {
  const auto data = as_faiss_input(vectors);
  const int dim = int(data.size(1));
  try {
    std::shared_ptr<faiss::Index> index(faiss::index_factory(dim, factory.c_str(), faiss::METRIC_INNER_PRODUCT));
    if (!index->is_trained) {
      if (data.size(0) == 0)
        throw Error("FAISS index '" + factory + "' needs training vectors, and the gallery is empty");
      index->train(data.size(0), data.data_ptr<float>());
    }
    if (data.size(0) > 0) index->add(data.size(0), data.data_ptr<float>());
    return index;
  } catch (const faiss::FaissException& e) {
    throw Error("FAISS factory '" + factory + "': " + faiss_message(e));
  }
}

void add_to_faiss_index(faiss::Index& index, const torch::Tensor& vectors) {
  const auto data = as_faiss_input(vectors);
  if (data.size(0) == 0) return;
  try {
    index.add(data.size(0), data.data_ptr<float>());
  } catch (const faiss::FaissException& e) {
    throw Error("FAISS add failed: " + faiss_message(e));
  }
}

std::int64_t faiss_index_size(const faiss::Index& index) { return index.ntotal; }

std::int64_t faiss_index_dim(const faiss::Index& index) { return index.d; }

void write_faiss_index(const faiss::Index& index, const std::string& path) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    faiss::write_index(&index, tmp.c_str());
  } catch (const faiss::FaissException& e) {
    std::remove(tmp.c_str());
    throw IoError(path + ": cannot write the FAISS index (" + faiss_message(e) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw IoError(path + ": cannot write the FAISS index (rename failed)");
  }
}

std::shared_ptr<faiss::Index> read_faiss_index(const std::string& path) {
  try {
    return std::shared_ptr<faiss::Index>(faiss::read_index(path.c_str()));
  } catch (const faiss::FaissException& e) {
    throw Error(path + ": not a readable FAISS index (" + faiss_message(e) + ")");
  }
}

}  // namespace imram
