#include "imram/search/shards.h"

#include <torch/torch.h>

#include <algorithm>
#include <functional>

#include "imram/error.h"

namespace imram {

int ShardRanges::shard_of(std::int64_t item) const {
  return int(std::upper_bound(begins.begin(), begins.end(), item) - begins.begin()) - 1;
}

std::vector<std::vector<Hit>> merge_shard_hits(const std::vector<std::vector<std::vector<Hit>>>& per_shard,
                                               const ShardRanges& ranges, std::int64_t k) {
  std::vector<std::vector<Hit>> merged(per_shard.empty() ? 0 : per_shard.front().size());
  for (std::size_t query = 0; query < merged.size(); ++query) {
    auto& hits = merged[query];
    for (std::size_t shard = 0; shard < per_shard.size(); ++shard)
      for (auto hit : per_shard[shard][query]) {
        hit.index += ranges.begins[shard];
        hits.push_back(hit);
      }
    const auto keep = std::min<std::size_t>(hits.size(), std::size_t(std::max<std::int64_t>(k, 0)));
    std::partial_sort(hits.begin(), hits.begin() + std::ptrdiff_t(keep), hits.end(), [](const Hit& a, const Hit& b) {
      return a.score != b.score ? a.score > b.score : a.index < b.index;
    });
    hits.resize(keep);
  }
  return merged;
}

ShardedSearcher::ShardedSearcher(std::vector<std::shared_ptr<const Searcher>> shards, ShardRanges ranges)
    : shards_(std::move(shards)), ranges_(std::move(ranges)) {
  if (shards_.empty() || int(shards_.size()) != ranges_.shards()) throw Error("a sharded searcher needs its shards");
  for (std::size_t s = 0; s < shards_.size(); ++s)
    if (shards_[s]->side() != shards_.front()->side() ||
        shards_[s]->size() != ranges_.begins[s + 1] - ranges_.begins[s])
      throw Error("shard " + std::to_string(s) + ": its searcher does not hold the shard's items");
}

GallerySide ShardedSearcher::side() const { return shards_.front()->side(); }

std::vector<std::vector<Hit>> ShardedSearcher::search_many(const std::vector<EncodedQuery>& queries, std::int64_t k,
                                                           SearchStats* stats, const SearchParams& params) const {
  std::vector<std::vector<std::vector<Hit>>> per_shard;
  for (const auto& shard : shards_) per_shard.push_back(shard->search_many(queries, k, stats, params));
  return merge_shard_hits(per_shard, ranges_, k);
}

ShardedStore::ShardedStore(std::vector<std::shared_ptr<const ItemStore>> shards, ShardRanges images,
                           ShardRanges captions)
    : shards_(std::move(shards)), images_(std::move(images)), captions_(std::move(captions)) {}

std::int64_t ShardedStore::regions_per_image() const { return shards_.front()->regions_per_image(); }
std::int64_t ShardedStore::embed_size() const { return shards_.front()->embed_size(); }

std::int64_t ShardedStore::caption_length(std::int64_t id) const {
  check_item_ids({id}, num_captions(), "caption");
  const auto shard = captions_.shard_of(id);
  return shards_[std::size_t(shard)]->caption_length(id - captions_.begins[std::size_t(shard)]);
}

bool ShardedStore::exact() const {
  return std::all_of(shards_.begin(), shards_.end(), [](const auto& shard) { return shard->exact(); });
}

bool ShardedStore::keeps_memory_halves() const {
  return std::all_of(shards_.begin(), shards_.end(), [](const auto& shard) { return shard->keeps_memory_halves(); });
}

namespace {

// Each shard reads its own ids; its rows go back to the places they were asked in. `read(s, ids)`
// returns shard s's tensors, one per field, rows first (undefined: a field the store leaves out);
// a field padded along dim 1 (captions' words) is padded to the longest of any shard, with zeros
// as a store pads it.
std::vector<torch::Tensor> gather_from_shards(
    const std::vector<std::int64_t>& ids, const ShardRanges& ranges,
    const std::function<std::vector<torch::Tensor>(int, const std::vector<std::int64_t>&)>& read) {
  std::vector<std::vector<std::int64_t>> local(std::size_t(ranges.shards())), places(std::size_t(ranges.shards()));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto shard = std::size_t(ranges.shard_of(ids[i]));
    local[shard].push_back(ids[i] - ranges.begins[shard]);
    places[shard].push_back(std::int64_t(i));
  }
  std::vector<std::vector<torch::Tensor>> parts(local.size());
  std::vector<std::int64_t> widths;
  for (std::size_t shard = 0; shard < local.size(); ++shard) {
    if (local[shard].empty()) continue;
    parts[shard] = read(int(shard), local[shard]);
    widths.resize(parts[shard].size(), 0);
    for (std::size_t field = 0; field < parts[shard].size(); ++field)
      if (parts[shard][field].defined() && parts[shard][field].dim() > 1)
        widths[field] = std::max(widths[field], parts[shard][field].size(1));
  }
  std::vector<torch::Tensor> out(widths.size());
  for (std::size_t shard = 0; shard < local.size(); ++shard)
    for (std::size_t field = 0; field < parts[shard].size(); ++field) {
      const auto& part = parts[shard][field];
      if (!part.defined()) continue;
      if (!out[field].defined()) {
        auto shape = part.sizes().vec();
        shape[0] = std::int64_t(ids.size());
        if (part.dim() > 1) shape[1] = widths[field];
        out[field] = torch::zeros(shape, part.options());
      }
      auto target = part.dim() > 1 ? out[field].narrow(1, 0, part.size(1)) : out[field];
      target.index_copy_(0, torch::tensor(places[shard], torch::kInt64).to(part.device()), part);
    }
  return out;
}

}  // namespace

EncodedImages ShardedStore::images(const std::vector<std::int64_t>& ids, bool memory_halves, bool as_stored) const {
  check_item_ids(ids, num_images(), "image");
  if (ids.empty()) return shards_.front()->images({}, memory_halves, as_stored);
  const auto fields = gather_from_shards(ids, images_, [&](int shard, const std::vector<std::int64_t>& local) {
    const auto read = shards_[std::size_t(shard)]->images(local, memory_halves, as_stored);
    return std::vector<torch::Tensor>{read.regions, read.region_mask, read.text_halves, read.image_halves};
  });
  EncodedImages images;
  images.regions = fields[0];
  images.region_mask = fields[1];
  images.text_halves = fields[2];
  images.image_halves = fields[3];
  return images;
}

EncodedCaptions ShardedStore::captions(const std::vector<std::int64_t>& ids, bool memory_halves, bool as_stored) const {
  check_item_ids(ids, num_captions(), "caption");
  if (ids.empty()) return shards_.front()->captions({}, memory_halves, as_stored);
  const auto fields = gather_from_shards(ids, captions_, [&](int shard, const std::vector<std::int64_t>& local) {
    const auto read = shards_[std::size_t(shard)]->captions(local, memory_halves, as_stored);
    return std::vector<torch::Tensor>{read.words, read.lengths, read.text_halves, read.image_halves};
  });
  EncodedCaptions captions;
  captions.words = fields[0];
  captions.lengths = fields[1];
  captions.text_halves = fields[2];
  captions.image_halves = fields[3];
  return captions;
}

}  // namespace imram
