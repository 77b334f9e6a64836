#pragma once
// What `imram serve` searches with, behind one small interface: an index directory (two-stage
// search, search/index_dir.h), or a model and a split made into one on the fly (search/gallery.h).
// Calls are made from one compute thread at a time (serve/server.h).
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "imram/data/image_info.h"
#include "imram/engine/explain.h"
#include "imram/runtime/world_share.h"
#include "imram/search/gallery.h"
#include "imram/search/index_dir.h"
#include "imram/search/results.h"

namespace imram {

// One query's answer as the backend found it. It stays typed while the server batches and trims
// it; SearchBackend::answer_json makes it `imram search --json`'s answer when the server writes it.
struct BackendAnswer {
  EncodedQuery query;
  std::int64_t query_image = -1;  // the image of an image query; -1 for text
  SearchAnswer answer;            // its timings are the whole batch's call
  std::size_t shards = 0;         // a sharded index: every shard answered (else there is no answer)
};

class SearchBackend {
 public:
  virtual ~SearchBackend() = default;
  // Several queries at once, one answer each, as each would be answered alone (the server batches
  // the queries that wait together; Searcher::search_many decides whether that is faster). Each
  // answer's timings are the whole call's. `params` go to the shortlist, as `imram search
  // --nprobe/--ef-search`.
  virtual std::vector<BackendAnswer> search_images(const std::vector<std::string>& texts, std::int64_t top,
                                                   const SearchParams& params) = 0;
  virtual std::vector<BackendAnswer> search_captions(const std::vector<std::int64_t>& images, std::int64_t top,
                                                     const SearchParams& params) = 0;
  // `imram search --json`'s answer (search/results.h), with "coverage" for a sharded index. Reads
  // only what the backend holds read-only: callable from any thread.
  virtual nlohmann::ordered_json answer_json(const BackendAnswer& answer) const = 0;
  virtual Explanation explain(std::int64_t image, const std::string& caption) = 0;
  virtual std::int64_t num_images() const = 0;
  virtual const std::vector<std::string>& captions() const = 0;
  virtual std::int64_t image_of_caption(std::int64_t caption) const = 0;
  virtual std::string split_name() const = 0;
  // Whether every image has an ImageInfo (description, picture or drawing, boxes), and its info.
  virtual bool described() const = 0;
  virtual ImageInfo image_info(std::int64_t image) const = 0;
  // The image's thumbnail stored in the index (JPEG bytes), empty when it has none.
  virtual std::string thumbnail(std::int64_t image) const = 0;
  // Model config, gallery size, index type.
  virtual nlohmann::ordered_json info() const = 0;
  // Why searches cannot be answered now (a sharded search's lost rank); empty while they can.
  virtual std::string unavailable() const { return {}; }
  // Ends what the backend runs beside the server (a sharded search's world), once it has stopped.
  virtual void finish() {}
};

// A split of `data_dir` encoded by the model in `model_dir` (cached under `cache_dir`, empty: no
// cache, pruned to `cache_limit_bytes`), searched exhaustively. `device`: cpu | cuda | cuda:N.
std::unique_ptr<SearchBackend> open_gallery_backend(const std::string& model_dir, const std::string& data_dir,
                                                    const std::string& split, const std::string& cache_dir,
                                                    const std::string& device,
                                                    std::uint64_t cache_limit_bytes = kDefaultGalleryCacheBytes);
// An index directory searched with `lists` (as `imram search`): text queries take a FAISS
// shortlist re-ranked by IMRAM (shortlist 0: every image scored), image queries likewise over
// captions; a prefilter above the shortlist makes it a cascade (search/rerank.h).
std::unique_ptr<SearchBackend> open_index_backend(const std::string& index_dir, const std::string& device,
                                                  const SearchLists& lists);

// A world of ranks serving a sharded index (docs/distributed.md#sharded-search-across-processes), rank r holding
// shard r: what a rank opens before it joins the world (opening a large index may take longer
// than the world's collectives wait). Rank 0 opens the whole index (every shard's texts and
// descriptions for its answers; the stores mapped, read only for image queries and explanations).
struct ShardedServing {
  std::string index_dir;
  std::shared_ptr<const GalleryIndex> index;  // rank 0: the whole index; rank r: shard r
  ShardLayout layout;
};
// The shards of the index at `index_dir`, checked to be one for each of `ranks`.
ShardLayout shards_for_world(const std::string& index_dir, int ranks);
ShardedServing open_for_world(const std::string& index_dir, const std::string& device, int rank, int ranks);
// Rank 0: the backend the server answers with; each search goes to every rank. `world`'s
// collectives must time out (CollectiveTimeout::kHeartbeat).
std::unique_ptr<SearchBackend> world_backend(const ShardedServing& serving, const SearchLists& lists,
                                             const WorldShare& world);
// Ranks > 0: answers rank 0's searches with its shard's part of the whole gallery's lists, until
// rank 0 ends the world; throws Error naming a lost rank when the world breaks.
void answer_for_shard(const ShardedServing& serving, const SearchLists& lists, const WorldShare& world);

}  // namespace imram
