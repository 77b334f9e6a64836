#pragma once
// Where a searcher finds gallery items already encoded: by index, only the items it asks for,
// so that re-ranking a shortlist reads only the shortlist and nothing is encoded at query time.
// The index directory's memory-mapped store implements it (search/index_dir.h).
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "imram/engine/query.h"
#include "imram/model/imram.h"

namespace imram {

// What the coded first step reads of some items (search/fragment_codes.h): each fragment's
// centroid id and each item's Gram matrix of its fragments. Captions come padded to the longest
// one asked for (code 0, Gram rows and columns 0).
struct CodedItems {
  torch::Tensor codes;    // (n, f) int64
  torch::Tensor grams;    // (n, f, f) in the store's type (float16 or float32)
  torch::Tensor lengths;  // (n) int64: real fragments of each item
};

class ItemStore {
 public:
  virtual ~ItemStore() = default;
  virtual std::int64_t num_images() const = 0;
  virtual std::int64_t num_captions() const = 0;
  virtual std::int64_t regions_per_image() const = 0;
  virtual std::int64_t embed_size() const = 0;                     // d of every fragment
  virtual std::int64_t caption_length(std::int64_t id) const = 0;  // words of caption `id`
  // Encoded items on the CPU, in the order of `ids` (each checked to be in range), as float32,
  // or with `as_stored` in the store's own type (float16 or float32; float32 where items are
  // decoded), which the engine's fused path reads without widening (engine/matching.h). Captions come padded to the longest one
  // asked for. `memory_halves`: with the items' memory halves (model/imram.h) where the store
  // keeps them; without, the engine computes them.
  virtual EncodedImages images(const std::vector<std::int64_t>& ids, bool memory_halves = false,
                               bool as_stored = false) const = 0;
  virtual EncodedCaptions captions(const std::vector<std::int64_t>& ids, bool memory_halves = false,
                                   bool as_stored = false) const = 0;
  // Whether the store keeps memory halves: a search that asks for them reads them, not computes.
  virtual bool keeps_memory_halves() const = 0;
  // Whether images() and captions() give the items as encoded; false where they are decoded from
  // compressed codes (an index without its exact store, docs/index.md#residuals), so that every
  // score from them is approximate.
  virtual bool exact() const { return true; }

  // Whether the store keeps codes of this side's fragments (docs/index.md#codes); the three
  // below throw when it does not.
  virtual bool keeps_codes(bool images) const;
  // The codebook of this side's fragments, (centroids, d) float32.
  virtual torch::Tensor codebook(bool images) const;
  virtual CodedItems coded_images(const std::vector<std::int64_t>& ids) const;
  virtual CodedItems coded_captions(const std::vector<std::int64_t>& ids) const;
};

// The values an exact stage reads of one item of this side: its fragments (a caption's, the mean
// of up to 1,000 spread over the gallery) times d. What the automatic lists scale by
// (search/search_params.h): a query's cost per candidate grows with it.
double stored_values_per_item(const ItemStore& store, GallerySide side);

// Throws "<what> <id>: out of range, the gallery holds <count>" for the first bad id.
void check_item_ids(const std::vector<std::int64_t>& ids, std::int64_t count, const char* what);

}  // namespace imram
