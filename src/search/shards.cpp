#include "imram/search/shards.h"

#include <torch/torch.h>

#include <algorithm>

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

bool ShardedStore::keeps_memory_halves() const {
  return std::all_of(shards_.begin(), shards_.end(), [](const auto& shard) { return shard->keeps_memory_halves(); });
}

namespace {

// Each shard reads its own ids; its rows go back to the places they were asked in. `read(s, ids)`
// returns shard s's tensors, one per field, rows first; rows are padded along dim 1 to the
// longest of any shard (captions), with zeros as a store pads them.
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
  std::vector<torch::Tensor> out;
  for (std::size_t shard = 0; shard < local.size(); ++shard) {
    if (local[shard].empty()) continue;
    parts[shard] = read(int(shard), local[shard]);
    if (out.empty()) out.resize(parts[shard].size());
    for (std::size_t field = 0; field < parts[shard].size(); ++field) {
      const auto& part = parts[shard][field];
      if (!part.defined()) continue;
      auto shape = part.sizes().vec();
      shape[0] = std::int64_t(ids.size());
      if (!out[field].defined()) {
        out[field] = torch::zeros(shape, part.options());
      } else if (part.dim() > 1 && part.size(1) > out[field].size(1)) {
        auto wider = torch::zeros(shape, part.options());
        wider.narrow(1, 0, out[field].size(1)).copy_(out[field]);
        out[field] = wider;
      }
    }
  }
  for (std::size_t shard = 0; shard < local.size(); ++shard)
    for (std::size_t field = 0; field < parts[shard].size(); ++field) {
      const auto& part = parts[shard][field];
      if (!part.defined()) continue;
      auto rows = part;
      if (part.dim() > 1 && part.size(1) < out[field].size(1)) {
        auto shape = part.sizes().vec();
        shape[1] = out[field].size(1);
        rows = torch::zeros(shape, part.options());
        rows.narrow(1, 0, part.size(1)).copy_(part);
      }
      out[field].index_copy_(0, torch::tensor(places[shard], torch::kInt64).to(part.device()), rows);
    }
  return out;
}

}  // namespace

EncodedImages ShardedStore::images(const std::vector<std::int64_t>& ids, bool memory_halves, bool as_stored) const {
  check_item_ids(ids, num_images(), "image");
  const auto fields = gather_from_shards(ids, images_, [&](int shard, const std::vector<std::int64_t>& local) {
    const auto read = shards_[std::size_t(shard)]->images(local, memory_halves, as_stored);
    return std::vector<torch::Tensor>{read.regions, read.region_mask, read.text_halves, read.image_halves};
  });
  EncodedImages images;
  if (fields.empty()) return shards_.front()->images({}, memory_halves, as_stored);
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
