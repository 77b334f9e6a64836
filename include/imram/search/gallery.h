#pragma once
// A searchable gallery made on the fly from a model and one split: `imram search --model M
// --data DIR`, and `imram serve` without an index. It is an index directory (search/index_dir.h,
// float32 store) built on first use and kept in a cache keyed by the model's and the split's
// files, checked against its checksums whenever it is reused and rebuilt when wrong. The cache
// is kept within a size limit by removing the entries least recently used.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "imram/data/precomp_dataset.h"
#include "imram/model/model_dir.h"
#include "imram/search/index_dir.h"
#include "imram/search/searcher.h"

namespace imram {

inline constexpr std::uint64_t kDefaultGalleryCacheBytes = std::uint64_t(4) << 30;

class Gallery {
 public:
  // `model` gives the device to score on; the gallery's own copy of the model comes from
  // `model_dir`. Empty cache_dir: nothing is kept on disk after start-up. After use, the cache is
  // pruned to `cache_limit_bytes` (this gallery's entry is kept even when larger).
  Gallery(Model& model, const PrecompSplit& split, const std::string& model_dir, const std::string& cache_dir,
          bool show_progress = false, std::uint64_t cache_limit_bytes = kDefaultGalleryCacheBytes);

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

// Removes the least recently used entries of `cache_dir` until it holds at most `limit_bytes`,
// never the entry named `keep`; also temporaries of builds that were killed. Other files and
// directories in `cache_dir` are left alone.
void prune_gallery_cache(const std::string& cache_dir, std::uint64_t limit_bytes, const std::string& keep);

}  // namespace imram
