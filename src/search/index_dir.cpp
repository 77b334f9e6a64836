#include "imram/search/index_dir.h"

#include <ATen/Parallel.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <tuple>

#include "imram/data/captions.h"
#include "imram/data/tokenizer.h"
#include "imram/error.h"
#include "imram/model/tensor_io.h"
#include "imram/runtime/runtime.h"
#include "imram/search/faiss_shortlist.h"
#include "imram/search/rerank.h"
#include "imram/search/residual_codes.h"
#include "imram/search/shards.h"
#include "imram/util/atomic_file.h"
#include "imram/util/counted_file.h"
#include "imram/util/fnv.h"
#include "imram/util/json_file.h"
#include "imram/util/progress.h"
#include "index_detail.h"

namespace fs = std::filesystem;

namespace imram {

using index_detail::kImageInfoFile;
using index_detail::kThumbnailOffsetsFile;
using index_detail::kThumbnailsFile;
using index_detail::scalar_type;

bool is_index_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(dir) / "manifest.json", ec)) return false;
  try {
    const auto json = read_json_file(dir + "/manifest.json", "index manifest");
    return json.is_object() && json.value("format", "") == kIndexFormat;
  } catch (const Error&) {
    return false;
  }
}

std::string model_fingerprint(const std::string& model_dir) {
  std::uint64_t hash = hash_file(model_dir + "/config.json", fs::file_size(model_dir + "/config.json"));
  std::vector<fs::path> weights;
  for (const auto& entry : fs::directory_iterator(fs::path(model_dir) / "weights")) weights.push_back(entry.path());
  std::sort(weights.begin(), weights.end());
  for (const auto& path : weights) {
    const auto name = path.filename().string();
    hash = fnv1a64(name.data(), name.size(), hash);
    hash = hash_file(path.string(), fs::file_size(path), hash);
  }
  return checksum_hex(hash);
}

namespace {

class MappedStore final : public ItemStore {
 public:
  MappedStore(const std::string& dir, const Manifest& m, ImramModel model) : m_(m), model_(std::move(model)) {
    if (m.exact_store) {
      regions_.emplace(dir + "/regions.bin", m.files.at("regions.bin").bytes);
      words_.emplace(dir + "/words.bin", m.files.at("words.bin").bytes);
    }
    if (m.memory_halves > 0) {
      if (m.memory_halves != model_->memory_halves_width())
        throw Error(dir + "/manifest.json: memory halves of " + std::to_string(m.memory_halves) +
                    " floats per fragment, the index's model makes " + std::to_string(model_->memory_halves_width()));
      region_halves_.emplace(dir + "/region_halves.bin",
                             std::uint64_t(m.images * m.regions * m.memory_halves) * element_size(m.store));
      word_halves_.emplace(dir + "/word_halves.bin", std::uint64_t(m.words * m.memory_halves) * element_size(m.store));
    }
    const std::string offsets_path = dir + "/word_offsets.bin";
    const auto offset_count = m.captions ? m.captions + 1 : 0;
    const MappedFile offsets(offsets_path, std::uint64_t(offset_count) * 8);
    offsets_.resize(std::size_t(offset_count));
    if (offset_count) std::memcpy(offsets_.data(), offsets.data(), offsets_.size() * 8);
    for (std::size_t j = 0; j + 1 < offsets_.size(); ++j)
      if (offsets_[j + 1] <= offsets_[j] || offsets_[j + 1] > m.words)
        throw Error(offsets_path + ": caption " + std::to_string(j) + " has a bad word range");
    if (m.codes) open_codes(dir);
  }
  std::int64_t num_images() const override { return m_.images; }
  std::int64_t num_captions() const override { return m_.captions; }
  std::int64_t regions_per_image() const override { return m_.regions; }
  std::int64_t embed_size() const override { return m_.embed_size; }
  std::int64_t caption_length(std::int64_t id) const override {
    check_item_ids({id}, m_.captions, "caption");
    return offsets_[std::size_t(id) + 1] - offsets_[std::size_t(id)];
  }

  bool keeps_memory_halves() const override { return m_.memory_halves > 0; }
  bool exact() const override { return m_.exact_store; }

  bool keeps_codes(bool images) const override {
    return m_.codes && (images ? m_.region_centroids > 0 : m_.word_centroids > 0);
  }

  torch::Tensor codebook(bool images) const override {
    if (!keeps_codes(images)) ItemStore::codebook(images);
    return images ? region_codebook_ : word_codebook_;
  }

  CodedItems coded_images(const std::vector<std::int64_t>& ids) const override {
    if (!keeps_codes(true)) ItemStore::coded_images(ids);
    check_item_ids(ids, m_.images, "image");
    const auto n = std::int64_t(ids.size()), R = m_.regions;
    CodedItems out;
    out.codes = torch::empty({n, R}, torch::kInt64);
    out.grams = torch::empty({n, R, R}, scalar_type(m_.store));
    out.lengths = torch::full({n}, R, torch::kInt64);
    const auto* codes = reinterpret_cast<const std::int32_t*>(region_codes_->data());
    auto* code_out = out.codes.data_ptr<std::int64_t>();
    // Plain copies: a tensor view per candidate cost more than its 36 x 36 values (a coded step
    // gathers thousands of them per query).
    const auto gram_bytes = std::size_t(R * R) * element_size(m_.store);
    const char* grams = region_grams_->data();
    auto* gram_out = static_cast<char*>(out.grams.data_ptr());
    at::parallel_for(0, n, 64, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        const auto id = ids[std::size_t(i)];
        std::copy(codes + id * R, codes + (id + 1) * R, code_out + i * R);
        std::memcpy(gram_out + std::size_t(i) * gram_bytes, grams + std::size_t(id) * gram_bytes, gram_bytes);
      }
    });
    return out;
  }

  CodedItems coded_captions(const std::vector<std::int64_t>& ids) const override {
    if (!keeps_codes(false)) ItemStore::coded_captions(ids);
    check_item_ids(ids, m_.captions, "caption");
    const auto n = std::int64_t(ids.size());
    std::int64_t longest = 1;
    for (const auto id : ids) longest = std::max(longest, offsets_[std::size_t(id) + 1] - offsets_[std::size_t(id)]);
    CodedItems out;
    out.codes = torch::zeros({n, longest}, torch::kInt64);
    out.grams = torch::zeros({n, longest, longest}, scalar_type(m_.store));
    out.lengths = torch::empty({n}, torch::kInt64);
    const auto* codes = reinterpret_cast<const std::int32_t*>(word_codes_->data());
    auto* code_out = out.codes.data_ptr<std::int64_t>();
    auto* length_out = out.lengths.data_ptr<std::int64_t>();
    const auto es = element_size(m_.store);
    const char* grams = word_grams_->data();
    auto* gram_out = static_cast<char*>(out.grams.data_ptr());
    at::parallel_for(0, n, 64, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        const auto id = std::size_t(ids[std::size_t(i)]);
        const auto first = offsets_[id], length = offsets_[id + 1] - first;
        length_out[i] = length;
        std::copy(codes + first, codes + first + length, code_out + i * longest);
        // Row r of the caption's (length x length) matrix into row r of its (longest x longest) slot.
        const char* from = grams + std::size_t(word_gram_offsets_[id]) * es;
        char* to = gram_out + std::size_t(i * longest * longest) * es;
        for (std::int64_t r = 0; r < length; ++r)
          std::memcpy(to + std::size_t(r * longest) * es, from + std::size_t(r * length) * es,
                      std::size_t(length) * es);
      }
    });
    return out;
  }

  EncodedImages images(const std::vector<std::int64_t>& ids, bool memory_halves, bool as_stored) const override {
    check_item_ids(ids, m_.images, "image");
    const auto type = as_stored ? read_type() : torch::kFloat32;
    EncodedImages out;
    out.regions = gather_images(ids, m_.embed_size, type, [&](std::int64_t first, std::int64_t rows, torch::Tensor to) {
      copy_fragments(true, first, rows, std::move(to));
    });
    if (memory_halves && keeps_memory_halves())
      std::tie(out.text_halves, out.image_halves) =
          model_->split_memory_halves(gather_images(ids, m_.memory_halves, type, copier(region_halves_->data())));
    return out;
  }

  EncodedCaptions captions(const std::vector<std::int64_t>& ids, bool memory_halves, bool as_stored) const override {
    check_item_ids(ids, m_.captions, "caption");
    const auto type = as_stored ? read_type() : torch::kFloat32;
    EncodedCaptions out;
    out.lengths = torch::empty({std::int64_t(ids.size())}, torch::kInt64);
    std::int64_t longest = 1;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto length = offsets_[std::size_t(ids[i]) + 1] - offsets_[std::size_t(ids[i])];
      out.lengths[std::int64_t(i)] = length;
      longest = std::max(longest, length);
    }
    out.words = gather_captions(ids, longest, m_.embed_size, type,
                                [&](std::int64_t first, std::int64_t rows, torch::Tensor to) {
                                  copy_fragments(false, first, rows, std::move(to));
                                });
    if (memory_halves && keeps_memory_halves())
      std::tie(out.text_halves, out.image_halves) = model_->split_memory_halves(
          gather_captions(ids, longest, m_.memory_halves, type, copier(word_halves_->data())));
    return out;
  }

 private:
  // The stored rows at `file` + `first_row`, `rows` x `width` values, as a tensor of the store's
  // type (read, never written).
  torch::Tensor stored_rows(const char* file, std::int64_t first_row, std::int64_t rows, std::int64_t width) const {
    return stored_values(file, first_row * width, rows, width);
  }
  torch::Tensor stored_values(const char* file, std::int64_t first_value, std::int64_t rows, std::int64_t width) const {
    const auto bytes = std::size_t(first_value) * element_size(m_.store);
    return torch::from_blob(const_cast<char*>(file) + bytes, {rows, width}, torch::dtype(scalar_type(m_.store)));
  }

  // `rows` stored rows from `first_row` into `out` (rows x width, contiguous), as out's type. As
  // stored they are one memcpy: LibTorch's copy_ of the same bytes took about twice as long, its
  // per-call setup included (a re-rank's hundred candidates with memory halves, d = 1024: 1.8-2.8
  // ms against 0.9-1.2 ms, docs/search.md).
  void copy_rows(const char* file, std::int64_t first_row, std::int64_t rows, std::int64_t width,
                 torch::Tensor out) const {
    const auto stored = stored_rows(file, first_row, rows, width);
    if (out.scalar_type() == stored.scalar_type() && out.is_contiguous())
      std::memcpy(out.data_ptr(), stored.data_ptr(), std::size_t(stored.numel()) * element_size(m_.store));
    else
      out.copy_(stored);
  }

  // The type items are cheapest to read in: the exact store's own, or float32 where they are
  // decoded (narrowing them to float16 would cost a pass and their precision).
  torch::ScalarType read_type() const { return m_.exact_store ? scalar_type(m_.store) : torch::kFloat32; }

  // What copies a file's stored rows (first row, rows, into) for gather_images and gather_captions.
  std::function<void(std::int64_t, std::int64_t, torch::Tensor)> copier(const char* file) const {
    return [this, file](std::int64_t first, std::int64_t rows, torch::Tensor out) {
      const auto width = out.size(1);
      copy_rows(file, first, rows, width, std::move(out));
    };
  }

  // Fragments [first, first + rows) of the images' (or captions') side into `out`: from the
  // exact store, or decoded from their codes and residuals (as float32, then `out`'s type).
  void copy_fragments(bool images, std::int64_t first, std::int64_t rows, torch::Tensor out) const {
    if (m_.exact_store) return copy_rows((images ? regions_ : words_)->data(), first, rows, m_.embed_size, out);
    const auto& codebook = images ? region_codebook_ : word_codebook_;
    const auto& buckets = images ? m_.region_buckets : m_.word_buckets;
    const auto* codes = reinterpret_cast<const std::int32_t*>((images ? region_codes_ : word_codes_)->data());
    const auto* residuals =
        reinterpret_cast<const std::uint8_t*>((images ? region_residuals_ : word_residuals_)->data());
    const auto direct = out.scalar_type() == torch::kFloat32 && out.is_contiguous();
    auto decoded = direct ? out : torch::empty({rows, m_.embed_size}, torch::kFloat32);
    decode_fragments(codebook.data_ptr<float>(), m_.embed_size, codes + first,
                     residuals + first * buckets.bytes_per_fragment(m_.embed_size), rows, buckets,
                     decoded.data_ptr<float>());
    if (!direct) out.copy_(decoded);
  }

  // Rows of `width` values per region of the images `ids`, as `type`, each image's rows put by
  // `copy` (first row, rows, into): straight from the mapped file (widened where the store is
  // float16 and `type` is not) or decoded, the items split over threads (one pass over the
  // bytes; a re-rank's hundred candidates with memory halves are 22 MB at d = 1024 in float16).
  template <typename Copy>
  torch::Tensor gather_images(const std::vector<std::int64_t>& ids, std::int64_t width, torch::ScalarType type,
                              const Copy& copy) const {
    auto out = torch::empty({std::int64_t(ids.size()), m_.regions, width}, type);
    at::parallel_for(0, std::int64_t(ids.size()), 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) copy(ids[std::size_t(i)] * m_.regions, m_.regions, out[i]);
    });
    return out;
  }

  // Rows of `width` values per word of the captions `ids`, zero-padded to `longest`, as `type`.
  template <typename Copy>
  torch::Tensor gather_captions(const std::vector<std::int64_t>& ids, std::int64_t longest, std::int64_t width,
                                torch::ScalarType type, const Copy& copy) const {
    auto out = torch::zeros({std::int64_t(ids.size()), longest, width}, type);
    at::parallel_for(0, std::int64_t(ids.size()), 1, [&](std::int64_t begin_item, std::int64_t end_item) {
      for (std::int64_t i = begin_item; i < end_item; ++i) {
        const auto begin = offsets_[std::size_t(ids[std::size_t(i)])],
                   end = offsets_[std::size_t(ids[std::size_t(i)]) + 1];
        copy(begin, end - begin, out[i].narrow(0, 0, end - begin));
      }
    });
    return out;
  }

  // The codes' files, checked against the counts (word_grams.bin against the captions' lengths).
  void open_codes(const std::string& dir) {
    const auto& m = m_;
    const auto mapped = [&](const char* name) {
      return std::make_unique<MappedFile>(dir + "/" + name, m.files.at(name).bytes);
    };
    word_gram_offsets_.resize(offsets_.size());
    for (std::size_t j = 0; j + 1 < offsets_.size(); ++j) {
      const auto length = offsets_[j + 1] - offsets_[j];
      word_gram_offsets_[j + 1] = word_gram_offsets_[j] + length * length;
    }
    const auto gram_values = word_gram_offsets_.empty() ? 0 : word_gram_offsets_.back();
    if (m.files.at("word_grams.bin").bytes != std::uint64_t(gram_values) * element_size(m.store))
      throw Error(dir + "/manifest.json: bad index manifest (word_grams.bin holds " +
                  std::to_string(m.files.at("word_grams.bin").bytes) + " bytes, the captions' lengths need " +
                  std::to_string(std::uint64_t(gram_values) * element_size(m.store)) + ")");
    region_codes_ = mapped("region_codes.bin");
    region_grams_ = mapped("region_grams.bin");
    word_codes_ = mapped("word_codes.bin");
    word_grams_ = mapped("word_grams.bin");
    const auto codebook = [&](const char* name, std::int64_t centroids) {
      const MappedFile file(dir + "/" + name, m.files.at(name).bytes);
      return centroids == 0
                 ? torch::Tensor()
                 : torch::from_blob(const_cast<char*>(file.data()), {centroids, m.embed_size}, torch::kFloat32).clone();
    };
    region_codebook_ = codebook("region_codebook.bin", m.region_centroids);
    word_codebook_ = codebook("word_codebook.bin", m.word_centroids);
    if (m.residual_bits > 0) {
      region_residuals_ = mapped("region_residuals.bin");
      word_residuals_ = mapped("word_residuals.bin");
    }
    // A code outside its codebook would read past the query's table: checked once, here.
    const auto check_codes = [&](const MappedFile& file, std::int64_t count, std::int64_t centroids, const char* name) {
      const auto* codes = reinterpret_cast<const std::int32_t*>(file.data());
      for (std::int64_t i = 0; i < count; ++i)
        if (codes[i] < 0 || codes[i] >= centroids)
          throw Error(dir + "/" + name + ": fragment " + std::to_string(i) + " has code " + std::to_string(codes[i]) +
                      ", the codebook holds " + std::to_string(centroids) + " centroids");
    };
    check_codes(*region_codes_, m.images * m.regions, m.region_centroids, "region_codes.bin");
    check_codes(*word_codes_, m.words, m.word_centroids, "word_codes.bin");
  }

  Manifest m_;
  ImramModel model_;
  std::optional<MappedFile> regions_, words_;  // the exact store, where the index keeps one
  std::unique_ptr<MappedFile> region_codes_, region_grams_, word_codes_, word_grams_, region_residuals_,
      word_residuals_;
  torch::Tensor region_codebook_, word_codebook_;
  std::vector<std::int64_t> word_gram_offsets_;
  std::optional<MappedFile> region_halves_, word_halves_;
  std::vector<std::int64_t> offsets_;
};

}  // namespace

struct GalleryIndex::Impl {
  std::string dir;
  Manifest manifest;
  Model model;
  std::shared_ptr<MappedStore> store;
  std::unique_ptr<MappedFile> image_globals, caption_globals;
  std::shared_ptr<faiss::Index> image_faiss, caption_faiss;
  std::vector<std::string> captions;
  // gallery_images.jsonl, mapped, and where each image's line starts (images + 1 offsets); only
  // when every image is described.
  std::unique_ptr<MappedFile> image_info_file;
  std::vector<std::uint64_t> image_info_offsets;
  // thumbnails.bin, mapped, and image i's bytes [offset i, offset i+1); only when described.
  std::unique_ptr<MappedFile> thumbnails;
  std::vector<std::int64_t> thumbnail_offsets;
  // A sharded index: its shards, which items each holds, and their stores as one; the fields
  // above are then the first shard's model and the whole gallery's counts and caption texts.
  std::vector<std::shared_ptr<GalleryIndex>> shards;
  ShardRanges image_ranges, caption_ranges;
  std::shared_ptr<const ItemStore> sharded_store;
  bool sharded() const { return !shards.empty(); }
};

GalleryIndex::GalleryIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GalleryIndex::~GalleryIndex() = default;

namespace {

std::shared_ptr<GalleryIndex> open_committed(const std::string& dir, Manifest manifest, torch::Device device,
                                             const std::string& expected_model) {
  auto impl = std::make_unique<GalleryIndex::Impl>();
  impl->dir = dir;
  impl->manifest = std::move(manifest);
  const auto& m = impl->manifest;
  const auto fingerprint = model_fingerprint(dir + "/model");
  if (fingerprint != m.model_fingerprint)
    throw Error(dir + "/model: differs from the model the index was built with (fingerprint mismatch)");
  if (!expected_model.empty() && model_fingerprint(expected_model) != fingerprint)
    throw Error(dir + ": was built with another model than " + expected_model + " (fingerprint mismatch)");
  impl->model = load_model(dir + "/model", device);
  if (impl->model.config().embed_size != m.embed_size || impl->model.config().global_head != m.global_dim)
    throw Error(dir + "/manifest.json: sizes disagree with the index's model");
  impl->store = std::make_shared<MappedStore>(dir, m, impl->model.net);
  // Only the bytes the manifest counts: what follows is an addition that never committed (a kill
  // mid-add), which the next addition truncates.
  const auto line_count = [&](const std::string& name, std::int64_t count, const char* items) {
    const auto text = read_committed(dir + "/" + name, m.files.at(name).bytes);
    const auto lines = std::int64_t(std::count(text.begin(), text.end(), '\n'));
    if (lines != count)
      throw Error(dir + "/" + name + ": " + std::to_string(lines) + " " + items + ", the manifest counts " +
                  std::to_string(count));
    return text;
  };
  line_count("captions.txt", m.captions, "captions");
  impl->captions = read_captions(dir + "/captions.txt");
  impl->captions.resize(std::size_t(m.captions));
  // Lines are counted on the mapping; they are parsed only when their image is shown.
  const auto& info_file = m.files.at(kImageInfoFile);
  std::unique_ptr<MappedFile> info;
  std::vector<std::uint64_t> offsets{0};
  if (info_file.bytes > 0) {
    info = std::make_unique<MappedFile>(dir + "/" + kImageInfoFile, info_file.bytes);
    for (std::uint64_t at = 0; at < info_file.bytes; ++at)
      if (info->data()[at] == '\n') offsets.push_back(at + 1);
  }
  if (std::int64_t(offsets.size()) - 1 != m.described)
    throw Error(dir + "/" + kImageInfoFile + ": " + std::to_string(offsets.size() - 1) +
                " lines, the manifest counts " + std::to_string(m.described) + " described images");
  if (m.described > 0 && m.described == m.images) {
    impl->image_info_file = std::move(info);
    impl->image_info_offsets = std::move(offsets);
    const auto thumbnail_bytes = std::int64_t(m.files.at(kThumbnailsFile).bytes);
    const std::string offsets_path = dir + "/" + kThumbnailOffsetsFile;
    const MappedFile ranges(offsets_path, std::uint64_t(m.described + 1) * 8);
    auto& bounds = impl->thumbnail_offsets;
    bounds.resize(std::size_t(m.described + 1));
    std::memcpy(bounds.data(), ranges.data(), bounds.size() * 8);
    if (bounds.front() != 0 || bounds.back() != thumbnail_bytes)
      throw Error(offsets_path + ": its offsets do not span thumbnails.bin's " + std::to_string(thumbnail_bytes) +
                  " bytes");
    for (std::size_t i = 0; i + 1 < bounds.size(); ++i)
      if (bounds[i + 1] < bounds[i])
        throw Error(offsets_path + ": image " + std::to_string(i) + " has a bad thumbnail range");
    impl->thumbnails = std::make_unique<MappedFile>(dir + "/" + kThumbnailsFile, std::uint64_t(thumbnail_bytes));
  }
  if (m.global_dim > 0 && m.generation > 0) {
    impl->image_globals =
        std::make_unique<MappedFile>(dir + "/image_globals.bin", std::uint64_t(m.images * m.global_dim) * 4);
    impl->caption_globals =
        std::make_unique<MappedFile>(dir + "/caption_globals.bin", std::uint64_t(m.captions * m.global_dim) * 4);
    impl->image_faiss = read_faiss_index(dir + "/" + faiss_file(m.generation, true));
    impl->caption_faiss = read_faiss_index(dir + "/" + faiss_file(m.generation, false));
    if (faiss_index_size(*impl->image_faiss) != m.images || faiss_index_size(*impl->caption_faiss) != m.captions ||
        faiss_index_dim(*impl->image_faiss) != m.global_dim || faiss_index_dim(*impl->caption_faiss) != m.global_dim)
      throw Error(dir + ": its FAISS indexes do not hold the manifest's item counts and sizes");
  }
  return std::make_shared<GalleryIndex>(std::move(impl));
}

// shards.json's entries, each checked to name a directory inside the index.
std::vector<nlohmann::json> shard_listing(const std::string& dir) {
  const std::string path = dir + "/" + index_detail::kShardsFile;
  const auto listing = read_json_file(path, "sharded index");
  const auto shards = listing.contains("shards") ? listing.at("shards") : nlohmann::json();
  if (listing.value("version", 0) != 1 || !shards.is_array() || shards.empty())
    throw Error(path + ": not a sharded index of this version (version 1 with a list of shards)");
  for (const auto& entry : shards) {
    const auto name = entry.is_object() ? entry.value("dir", "") : "";
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw Error(path + ": a shard's dir must be a directory name inside the index");
  }
  return shards.get<std::vector<nlohmann::json>>();
}

// Which items each listed shard holds, from the listing's counts.
ShardLayout layout_of(const std::string& dir, const std::vector<nlohmann::json>& listing) {
  ShardLayout layout;
  for (const auto& entry : listing) {
    const auto images = entry.value("images", std::int64_t(-1)), captions = entry.value("captions", std::int64_t(-1));
    if (images < 0 || captions < 0)
      throw Error(dir + "/" + index_detail::kShardsFile + ": a shard's images and captions must be counts");
    layout.images.begins.push_back(layout.images.total() + images);
    layout.captions.begins.push_back(layout.captions.total() + captions);
  }
  return layout;
}

// The listed shard, opened, checked to hold the items the list says.
std::shared_ptr<GalleryIndex> open_listed_shard(const std::string& dir, const nlohmann::json& entry,
                                                torch::Device device, const std::string& expected_model) {
  const auto name = entry.value("dir", "");
  auto shard = GalleryIndex::open(dir + "/" + name, device, expected_model);
  if (entry.value("images", std::int64_t(-1)) != shard->num_images() ||
      entry.value("captions", std::int64_t(-1)) != shard->num_captions())
    throw Error(dir + "/" + index_detail::kShardsFile + ": " + name + " holds " + std::to_string(shard->num_images()) +
                " images and " + std::to_string(shard->num_captions()) + " captions, not what the list says");
  return shard;
}

std::shared_ptr<GalleryIndex> open_sharded(const std::string& dir, torch::Device device,
                                           const std::string& expected_model) {
  auto impl = std::make_unique<GalleryIndex::Impl>();
  impl->dir = dir;
  std::vector<std::shared_ptr<const ItemStore>> stores;
  std::string fingerprint;
  const auto listing = shard_listing(dir);
  // Each shard is checked to hold what the listing counts.
  const auto layout = layout_of(dir, listing);
  impl->image_ranges = layout.images;
  impl->caption_ranges = layout.captions;
  for (const auto& entry : listing) {
    auto shard = open_listed_shard(dir, entry, device, expected_model);
    const auto manifest = read_manifest(shard->dir());
    if (impl->shards.empty()) {
      fingerprint = manifest.model_fingerprint;
      impl->manifest = manifest;  // the first shard's, with the whole gallery's counts below
    }
    const auto& first = impl->shards.empty() ? shard : impl->shards.front();
    if (manifest.model_fingerprint != fingerprint || shard->captions_per_image() != first->captions_per_image() ||
        shard->has_shortlist() != first->has_shortlist())
      throw Error(shard->dir() + ": differs from " + first->dir() +
                  " in its model, captions per image or shortlist; the shards of one index share them");
    impl->captions.insert(impl->captions.end(), shard->caption_texts().begin(), shard->caption_texts().end());
    stores.push_back(shard->store());
    impl->shards.push_back(std::move(shard));
  }
  const auto& first = *impl->shards.front();
  impl->model = first.model();
  impl->manifest.images = impl->image_ranges.total();
  impl->manifest.captions = impl->caption_ranges.total();
  impl->sharded_store = std::make_shared<ShardedStore>(stores, impl->image_ranges, impl->caption_ranges);
  return std::make_shared<GalleryIndex>(std::move(impl));
}

}  // namespace

std::shared_ptr<GalleryIndex> GalleryIndex::open_shard(const std::string& dir, int shard, torch::Device device) {
  const auto shards = shard_listing(dir);
  if (shard < 0 || shard >= int(shards.size()))
    throw Error(dir + ": has " + std::to_string(shards.size()) + " shards, not a shard " + std::to_string(shard));
  return open_listed_shard(dir, shards[std::size_t(shard)], device, "");
}

ShardLayout GalleryIndex::shard_layout(const std::string& dir) { return layout_of(dir, shard_listing(dir)); }

std::shared_ptr<GalleryIndex> GalleryIndex::open(const std::string& dir, torch::Device device,
                                                 const std::string& expected_model,
                                                 const std::function<void()>& after_manifest_read) {
  if (is_sharded_index_dir(dir)) return open_sharded(dir, device, expected_model);
  // An `add` that commits while this reads removes the FAISS files of the generation read here:
  // then the new manifest is read again. A few tries: adds do not commit that often.
  for (int attempt = 1;; ++attempt) {
    auto manifest = read_manifest(dir);
    const auto generation = manifest.generation;
    if (after_manifest_read) after_manifest_read();
    try {
      return open_committed(dir, std::move(manifest), device, expected_model);
    } catch (const Error&) {
      if (attempt == 3 || read_manifest(dir).generation == generation) throw;
    }
  }
}

const std::string& GalleryIndex::dir() const { return impl_->dir; }
const Model& GalleryIndex::model() const { return impl_->model; }
std::int64_t GalleryIndex::num_images() const { return impl_->manifest.images; }
std::int64_t GalleryIndex::num_captions() const { return impl_->manifest.captions; }
int GalleryIndex::captions_per_image() const { return impl_->manifest.captions_per_image; }
bool GalleryIndex::has_shortlist() const {
  return impl_->sharded() ? impl_->shards.front()->has_shortlist() : impl_->image_faiss != nullptr;
}
std::string GalleryIndex::faiss_factory() const { return has_shortlist() ? impl_->manifest.faiss_factory : ""; }
std::string GalleryIndex::store_dtype() const { return to_string(impl_->manifest.store); }
const std::vector<std::string>& GalleryIndex::caption_texts() const { return impl_->captions; }
bool GalleryIndex::described() const {
  if (impl_->sharded())
    return std::all_of(impl_->shards.begin(), impl_->shards.end(), [](const auto& s) { return s->described(); });
  return impl_->image_info_file != nullptr;
}

ImageInfo GalleryIndex::image_info(std::int64_t image) const {
  if (!described()) return {};
  if (image < 0 || image >= num_images()) throw Error("image " + std::to_string(image) + " is not in the gallery");
  if (impl_->sharded()) {
    const auto shard = impl_->image_ranges.shard_of(image);
    const auto first = impl_->image_ranges.begins[std::size_t(shard)];
    auto info = impl_->shards[std::size_t(shard)]->image_info(image - first);
    if (info.twin >= 0) info.twin += first;
    return info;
  }
  const auto& offsets = impl_->image_info_offsets;
  const auto begin = offsets[std::size_t(image)], end = offsets[std::size_t(image) + 1] - 1;
  return parse_image_info(std::string(impl_->image_info_file->data() + begin, end - begin),
                          impl_->dir + "/" + kImageInfoFile + ":" + std::to_string(image + 1), num_images());
}
std::string GalleryIndex::thumbnail(std::int64_t image) const {
  if (!described()) return {};
  if (image < 0 || image >= num_images()) throw Error("image " + std::to_string(image) + " is not in the gallery");
  if (impl_->sharded()) {
    const auto shard = impl_->image_ranges.shard_of(image);
    return impl_->shards[std::size_t(shard)]->thumbnail(image - impl_->image_ranges.begins[std::size_t(shard)]);
  }
  const auto begin = impl_->thumbnail_offsets[std::size_t(image)],
             end = impl_->thumbnail_offsets[std::size_t(image) + 1];
  if (begin == end) return {};
  return std::string(impl_->thumbnails->data() + begin, std::size_t(end - begin));
}

std::shared_ptr<const ItemStore> GalleryIndex::store() const {
  return impl_->sharded() ? impl_->sharded_store : impl_->store;
}

namespace {

// The shards' global embeddings, one after another (a copy: each shard maps its own file).
torch::Tensor joined_globals(const std::vector<std::shared_ptr<GalleryIndex>>& shards, bool images) {
  std::vector<torch::Tensor> parts;
  for (const auto& shard : shards) parts.push_back(images ? shard->image_globals() : shard->caption_globals());
  return parts.front().defined() ? torch::cat(parts) : torch::Tensor();
}

}  // namespace

torch::Tensor GalleryIndex::image_globals() const {
  if (impl_->sharded()) return joined_globals(impl_->shards, true);
  if (!impl_->image_globals) return {};
  const auto& m = impl_->manifest;
  return torch::from_blob(const_cast<char*>(impl_->image_globals->data()), {m.images, m.global_dim}, torch::kFloat32);
}

torch::Tensor GalleryIndex::caption_globals() const {
  if (impl_->sharded()) return joined_globals(impl_->shards, false);
  if (!impl_->caption_globals) return {};
  const auto& m = impl_->manifest;
  return torch::from_blob(const_cast<char*>(impl_->caption_globals->data()), {m.captions, m.global_dim},
                          torch::kFloat32);
}

std::shared_ptr<const Searcher> GalleryIndex::stage1(GallerySide side) const {
  if (!has_shortlist())
    throw Error(impl_->dir +
                ": its model has no global head, so the index has no shortlist; search it with "
                "--shortlist 0 or rebuild it from a model trained with --global-weight or imram train-global");
  if (impl_->sharded()) {
    std::vector<std::shared_ptr<const Searcher>> shards;
    for (const auto& shard : impl_->shards) shards.push_back(shard->stage1(side));
    return std::make_shared<ShardedSearcher>(shards, ranges_of(side));
  }
  return std::make_shared<FaissShortlist>(side == GallerySide::Images ? impl_->image_faiss : impl_->caption_faiss,
                                          side);
}

bool GalleryIndex::has_codes(GallerySide side) const {
  if (impl_->sharded())
    return std::all_of(impl_->shards.begin(), impl_->shards.end(), [&](const auto& s) { return s->has_codes(side); });
  return impl_->store->keeps_codes(side == GallerySide::Images);
}

const ShardRanges& GalleryIndex::ranges_of(GallerySide side) const {
  return side == GallerySide::Images ? impl_->image_ranges : impl_->caption_ranges;
}

std::shared_ptr<const Searcher> GalleryIndex::searcher(GallerySide side, std::int64_t shortlist, std::int64_t prefilter,
                                                       std::int64_t step1, std::int64_t gallery_items) const {
  if (impl_->sharded()) {
    std::vector<std::shared_ptr<const Searcher>> shards;
    for (const auto& shard : impl_->shards)
      shards.push_back(shard->searcher(side, shortlist, prefilter, step1, ranges_of(side).total()));
    return std::make_shared<ShardedSearcher>(shards, ranges_of(side));
  }
  if (shortlist == 0) return std::make_shared<ExhaustiveSearcher>(impl_->model.net, impl_->store, side);
  const auto coded = has_codes(side) ? std::make_shared<CodedFirstStep>(impl_->model.net, impl_->store, side) : nullptr;
  return std::make_shared<RerankSearcher>(stage1(side), shortlist, impl_->model.net, impl_->store, prefilter, coded,
                                          step1, gallery_items);
}

SearchLists GalleryIndex::resolved_lists(GallerySide side, const SearchLists& lists) const {
  const auto gallery = side == GallerySide::Images ? num_images() : num_captions();
  return resolve_lists(lists, gallery, stored_values_per_item(*store(), side), has_codes(side));
}

std::shared_ptr<const Searcher> GalleryIndex::searcher(GallerySide side, const SearchLists& resolved) const {
  return searcher(side, resolved.shortlist, resolved.prefilter, resolved.step1);
}

EncodedQuery GalleryIndex::text_query(const std::string& text) const { return encode_text_query(impl_->model, text); }

EncodedQuery GalleryIndex::image_query(std::int64_t image) const {
  if (image < 0 || image >= num_images())
    throw Error("image " + std::to_string(image) + ": out of range, the index holds " + std::to_string(num_images()) +
                " images");
  if (impl_->sharded()) {
    const auto shard = impl_->image_ranges.shard_of(image);
    return impl_->shards[std::size_t(shard)]->image_query(image - impl_->image_ranges.begins[std::size_t(shard)]);
  }
  EncodedQuery query;
  const auto device = impl_->model.net->parameters().front().device();
  query.image = impl_->store->images({image}, false, false);
  query.image.regions = query.image.regions.to(device);
  if (impl_->image_globals) query.global = image_globals()[image].clone();
  return query;
}

std::vector<std::shared_ptr<const GalleryIndex>> GalleryIndex::shards() const {
  return {impl_->shards.begin(), impl_->shards.end()};
}

void GalleryIndex::verify() const {
  if (impl_->sharded()) {
    for (const auto& shard : impl_->shards) shard->verify();
    return;
  }
  for (const auto& [name, entry] : impl_->manifest.files) {
    const std::string path = impl_->dir + "/" + name;
    if (hash_file(path, entry.bytes) != entry.hash) throw Error(path + ": checksum mismatch: the file is corrupt");
  }
  for (std::int64_t image = 0; described() && image < num_images(); ++image) image_info(image);
}

}  // namespace imram