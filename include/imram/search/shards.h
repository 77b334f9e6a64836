#pragma once
// A gallery held as S shards (docs/index.md#shards), as FAISS's IndexShards holds one: each shard
// an ordinary index of a contiguous range of the items. A search asks every shard for its best k
// and keeps the best k of all their answers by score; IMRAM's score of a pair needs nothing but the
// pair, so the merged list is the list one index of all the items gives with the same lists.
#include <cstdint>
#include <memory>
#include <vector>

#include "imram/search/item_store.h"
#include "imram/search/searcher.h"

namespace imram {

// Shard s holds the items [begins[s], begins[s + 1]).
struct ShardRanges {
  std::vector<std::int64_t> begins{0};
  int shards() const { return int(begins.size()) - 1; }
  std::int64_t total() const { return begins.back(); }
  int shard_of(std::int64_t item) const;  // the item must be in [0, total())
};

// The best k of each query's hits from every shard (per_shard[s][query], shard s's own ids),
// with the ids the whole gallery gives them: higher score first, then the lower id.
std::vector<std::vector<Hit>> merge_shard_hits(const std::vector<std::vector<std::vector<Hit>>>& per_shard,
                                               const ShardRanges& ranges, std::int64_t k);

class ShardedSearcher final : public Searcher {
 public:
  // One searcher per shard, each of the same side, over the ranges' items.
  ShardedSearcher(std::vector<std::shared_ptr<const Searcher>> shards, ShardRanges ranges);
  GallerySide side() const override;
  std::int64_t size() const override { return ranges_.total(); }
  // Each shard in turn with the same k and params (a shard's automatic lists follow its own size);
  // `stats` adds up the shards'.
  std::vector<std::vector<Hit>> search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                            SearchStats* stats, const SearchParams& params) const override;

 private:
  std::vector<std::shared_ptr<const Searcher>> shards_;
  ShardRanges ranges_;
};

// The shards' stores as one: items in the order asked, each read from its shard. It keeps no codes:
// each shard has its own codebooks, which only that shard's searcher reads.
class ShardedStore final : public ItemStore {
 public:
  ShardedStore(std::vector<std::shared_ptr<const ItemStore>> shards, ShardRanges images, ShardRanges captions);
  std::int64_t num_images() const override { return images_.total(); }
  std::int64_t num_captions() const override { return captions_.total(); }
  std::int64_t regions_per_image() const override;
  std::int64_t embed_size() const override;
  std::int64_t caption_length(std::int64_t id) const override;
  EncodedImages images(const std::vector<std::int64_t>& ids, bool memory_halves = false,
                       bool as_stored = false) const override;
  EncodedCaptions captions(const std::vector<std::int64_t>& ids, bool memory_halves = false,
                           bool as_stored = false) const override;
  bool keeps_memory_halves() const override;
  bool exact() const override;

 private:
  std::vector<std::shared_ptr<const ItemStore>> shards_;
  ShardRanges images_, captions_;
};

}  // namespace imram
