#pragma once
// A searchable gallery made on the fly from a model and one split: `imram search --model M
// --data DIR`, and `imram serve` without an index. It is an index directory (search/index_dir.h,
// float32 store) built on first use and kept in a cache keyed by the model's and the split's
// files, checked against its checksums whenever it is reused and rebuilt when wrong.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "imram/data/precomp_dataset.h"
#include "imram/model/model_dir.h"
#include "imram/search/index_dir.h"
#include "imram/search/searcher.h"

namespace imram {

using SearchHit = Hit;

class Gallery {
 public:
  // `model` gives the device to score on; the gallery's own copy of the model comes from
  // `model_dir`. Empty cache_dir: nothing is kept on disk after start-up.
  Gallery(Model& model, const PrecompSplit& split, const std::string& model_dir,
          const std::string& cache_dir, bool show_progress = false);

  std::vector<SearchHit> search_images(const std::string& query, std::int64_t top) const;
  std::vector<SearchHit> search_captions(std::int64_t image, std::int64_t top) const;
  bool loaded_from_cache() const { return from_cache_; }
  const GalleryIndex& index() const { return *index_; }
  std::shared_ptr<const GalleryIndex> shared_index() const { return index_; }

 private:
  std::shared_ptr<GalleryIndex> index_;
  bool from_cache_ = false;
};

// The cache key: the model's weights and config, the split's files (path, size, mtime).
std::string gallery_fingerprint(const std::string& model_dir, const PrecompSplit& split);
std::string default_cache_dir();  // $XDG_CACHE_HOME/imram or ~/.cache/imram

}  // namespace imram
