#pragma once
// A searchable gallery: one split's images and captions encoded once by a model and cached on
// disk, so that each query costs only its own encoding and the IMRAM scoring against the
// cached items (never a re-encoding of the gallery).
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "imram/data/precomp_dataset.h"
#include "imram/engine/scorer.h"
#include "imram/model/model_dir.h"

namespace imram {

struct SearchHit {
  std::int64_t index = 0;  // image index (text query) or caption index (image query)
  double score = 0;
};

class Gallery {
 public:
  // Loads the encoded split from `cache_dir` when a cache made by the same model weights for
  // the same files exists; otherwise encodes it and writes the cache (empty cache_dir: none).
  Gallery(Model& model, const PrecompSplit& split, const std::string& model_dir,
          const std::string& cache_dir);

  std::vector<SearchHit> search_images(const std::string& query, std::int64_t top) const;
  std::vector<SearchHit> search_captions(std::int64_t image, std::int64_t top) const;
  bool loaded_from_cache() const { return from_cache_; }

 private:
  Model& model_;
  const PrecompSplit& split_;
  EncodedImages images_;
  EncodedCaptions captions_;
  bool from_cache_ = false;
};

// The cache key: the model's weights and config, the split's files (path, size, mtime).
std::string gallery_fingerprint(const std::string& model_dir, const PrecompSplit& split);
std::string default_cache_dir();  // $XDG_CACHE_HOME/imram or ~/.cache/imram

}  // namespace imram
