#pragma once
// Stage 1 of two-stage search: FAISS over the gallery's global embeddings (inner product of
// l2-normalised vectors = cosine). The factory string is FAISS's own ("Flat", "IVF1024,Flat",
// "HNSW32", "IVF4096,PQ64", ...). FAISS types stay out of this header.
#include <memory>
#include <string>

#include "imram/search/searcher.h"

namespace faiss {
struct Index;
}

namespace imram {

class FaissShortlist final : public Searcher {
 public:
  static constexpr int kDefaultNprobe = 32, kDefaultEfSearch = 128;

  // The index is only read: SearchParams of each call set nprobe (IVF) and efSearch (HNSW) for
  // that call, so concurrent searches with different settings do not disturb each other.
  FaissShortlist(std::shared_ptr<const faiss::Index> index, GallerySide side);
  GallerySide side() const override { return side_; }
  std::int64_t size() const override;
  // All queries in one FAISS search, except that an inverted file of float32 or float16 lists
  // (IVFn,Flat or IVFn,SQfp16, inner product) has its probed lists scanned here
  // (faiss_shortlist.cpp says why); hits carry the inner product as both score and stage1.
  std::vector<std::vector<Hit>> search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                            SearchStats* stats, const SearchParams& params) const override;

 private:
  std::shared_ptr<const faiss::Index> index_;
  GallerySide side_;
};

// The inverted lists an IVF search visits when the call names none: kDefaultNprobe, or more
// when k asks for more items than that many lists hold on average. The lists visited should hold
// about twice k: a cascade's first list of 20,000 among 500,000 captions in 1,024 lists needs
// 82 of them, where 32 hold about 15,600 and FAISS would return fewer items than asked
// (docs/search.md#100000-images). At most every list.
std::int64_t default_nprobe(std::int64_t k, std::int64_t lists, std::int64_t items);

// What we build when the user names no factory: exact ("Flat") while one query's scan reads at
// most kFlatScanFloats (vectors x dim: 131,072 vectors of 128 dimensions, 16,384 of 1024), an
// inverted file beyond, with about 4 sqrt(n) lists (a power of two, 64..1024). An inverted
// file loses much of what the first stage finds (docs/search.md#100000-images): exact search
// is kept as long as it is cheap next to the re-rank. The inverted file's lists hold float16
// residuals from their centroid (SQfp16): the index keeps the float32 embeddings beside it, so
// a second float32 copy would double the head's size for scores that differ in the fourth
// decimal (docs/search.md#a-float16-copy-of-the-head).
inline constexpr double kFlatScanFloats = double(1 << 24);
std::string default_faiss_factory(std::int64_t vectors, std::int64_t dim);

// Creates an inner-product index from `factory`, trains it on `vectors` (n, dim) float32 when
// it needs training, and adds them. Errors name `factory`.
std::shared_ptr<faiss::Index> build_faiss_index(const std::string& factory, const torch::Tensor& vectors);
void add_to_faiss_index(faiss::Index& index, const torch::Tensor& vectors);
std::int64_t faiss_index_size(const faiss::Index& index);
std::int64_t faiss_index_dim(const faiss::Index& index);
// Atomic write (temporary file + rename); read errors name the file.
void write_faiss_index(const faiss::Index& index, const std::string& path);
std::shared_ptr<faiss::Index> read_faiss_index(const std::string& path);

}  // namespace imram
