#pragma once
// An index directory (docs/index.md): everything two-stage search needs, self-contained.
//   manifest.json            format, version, model fingerprint, counts, FAISS factory, store dtype,
//                            file sizes and checksums; written last, it is the commit point
//   model/                   a copy of the model directory
//   captions.txt             the captions' texts, one per line
//   regions.bin              encoded regions, images x regions x d, float16 or float32
//   words.bin                encoded words of all captions, concatenated, words x d
//   word_offsets.bin         int64, captions + 1 offsets into words.bin
//   image_globals.bin        float32 images x g global embeddings (with a global head only)
//   caption_globals.bin      float32 captions x g
//   region_codes.bin, word_codes.bin, region_grams.bin, word_grams.bin, region_codebook.bin,
//   word_codebook.bin        the fragments' codes (search/fragment_codes.h), when kept
//   region_residuals.bin, word_residuals.bin   their compressed residuals (search/residual_codes.h),
//                            when kept; an index without regions.bin and words.bin decodes from them
//   gallery_images.jsonl     what is known of each image beyond its features (ImageInfo), one line each
//   thumbnails.bin           a small JPEG of each described image that has a picture, concatenated
//   thumbnail_offsets.bin    int64, described + 1 offsets into thumbnails.bin
//   images.<gen>.faiss       FAISS over image_globals (text -> image stage 1)
//   captions.<gen>.faiss     FAISS over caption_globals (image -> text stage 1)
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "imram/data/image_info.h"
#include "imram/data/precomp_dataset.h"
#include "imram/engine/encoding.h"
#include "imram/model/model_dir.h"
#include "imram/runtime/world_share.h"
#include "imram/search/index_manifest.h"
#include "imram/search/item_store.h"
#include "imram/search/searcher.h"
#include "imram/search/shards.h"

namespace imram {

// The longest side of the thumbnails an index stores: a grid card or an explain view's step map
// (300 px), not the photo (docs/index.md).
inline constexpr int kThumbnailSide = 320;

inline constexpr int kAutoResidualBits = -1;

struct IndexOptions {
  std::string faiss_factory;  // empty: default_faiss_factory(images, global dimensions)
  StoreDType store = StoreDType::Float16;
  // Also store the items' memory halves (docs/index.md): a re-rank then skips their products with
  // the memory weights, for (2d per direction) more floats per region and word on disk.
  bool memory_halves = false;
  // Keep codes of the fragments (docs/index.md#codes): the cascade's first step then reads no
  // fragment of its many candidates. `codebook_size` 0: auto_codebook_size of each side.
  bool codes = true;
  std::int64_t codebook_size = 0;
  // Keep each fragment's residual from its centroid in this many bits per value (0: none;
  // docs/index.md#residuals), and, with exact_store false, keep no exact store at all: every
  // fragment a search reads is then decoded from its codes, and scores are approximate.
  // kAutoResidualBits: 2 without the exact store, else none.
  int residual_bits = kAutoResidualBits;
  bool exact_store = true;
  bool show_progress = true;
  std::string device = "cpu";  // where items are encoded: cpu, cuda, cuda:N
  // Images encoded at once (captions: 4x as many); a world's unit of work. The index's bytes
  // depend on it: a world builds what one process builds with the same batch.
  std::int64_t batch_size = 128;
};

// How an index's manifest records where its items came from (a dataset directory, a folder or
// list of pictures): absolute, links resolved, no trailing separator, so that two spellings of
// one place ("pics", "./pics/", a link to it) are the same source.
std::string source_path(const std::string& path);

// Whether `dir` holds an index (its manifest names the format): what a build may replace.
bool is_index_dir(const std::string& dir);

// Whether `dir` holds a sharded index: its shards.json names the format (docs/index.md#shards).
bool is_sharded_index_dir(const std::string& dir);

// A 64-bit content hash (hex) of a model directory's config.json and weights.
std::string model_fingerprint(const std::string& model_dir);

// Writes a new index (or adds to one) item by item, so that galleries larger than memory stream
// through. Nothing is visible until commit(): a new index appears whole, an addition is taken
// only once the manifest that counts it is in place.
class IndexWriter {
 public:
  // A new index of `model_dir` at `dir`; refuses a `dir` that exists and is not an index.
  // In a `world` (index build --nproc), every rank creates its writer and makes the same calls:
  // each encodes its blocks and codes its share of the fragments, rank 0 alone writes and commits.
  static IndexWriter create(const std::string& dir, const std::string& model_dir, const IndexOptions& options,
                            const WorldShare* world = nullptr);
  // Appends to the index at `dir`.
  static IndexWriter append(const std::string& dir, bool show_progress = true, const std::string& device = "cpu");
  IndexWriter(IndexWriter&&) noexcept;
  // Drops this writer's uncommitted work as its destructor would, then takes `other`'s.
  IndexWriter& operator=(IndexWriter&& other) noexcept;
  ~IndexWriter();

  // Raw region features (n, R, D) float32: encoded by the model and stored.
  void add_images(const torch::Tensor& features);
  // Captions as token ids with their texts; encoded and stored.
  void add_captions(const TokenIds& ids, const std::vector<std::string>& texts);
  // A split: its images, then its captions (checked: captions_per_image matches the index's).
  // `first_image`/`images`: only the images [first_image, first_image + images) and their
  // captions (images -1: to the split's end), as a shard holds them.
  void add_split(const PrecompSplit& split, std::int64_t first_image = 0, std::int64_t images = -1);
  // Images without captions (a folder of photos): features (n, R, D) float32, one info each or
  // none, and `source`, the manifest's record of where they came from. The index's captions are
  // then no longer tied to its images (captions_per_image 0): it can be searched both ways but
  // not evaluated, and takes no split with captions after them.
  void add_uncaptioned_images(const NpyArray& features, const std::vector<ImageInfo>& infos,
                              const nlohmann::ordered_json& source);
  // Throws when the index holds a source whose fields include every field of `source` (a split
  // of a dataset, a folder of pictures): its items would be held twice.
  void refuse_held_source(const nlohmann::ordered_json& source) const;
  // Where warnings go (a picture that cannot be made a thumbnail); by default standard error.
  void on_warning(std::function<void(const std::string&)> warn);
  const ModelConfig& model_config() const;
  std::int64_t regions_per_image() const;  // 0 while the index holds no image
  // FAISS indexes, manifest, and the swap into place.
  void commit();

 private:
  struct State;
  explicit IndexWriter(std::unique_ptr<State> state);
  void abandon() noexcept;  // a new index never committed: its temporary directory removed
  std::unique_ptr<State> state_;
};

// A new index of `split` at `dir` held as `shards` shards (docs/index.md#shards): shard s is an
// ordinary index of the s-th contiguous range of the split's images (rank_slice) and their
// captions, and shards.json lists them. Nothing is visible at `dir` until every shard is built; an
// index there (sharded or not) is then replaced. In a `world`, every rank makes this call and the
// ranks build each shard together, as IndexWriter::create does.
void build_sharded_index(const std::string& dir, const std::string& model_dir, const PrecompSplit& split, int shards,
                         const IndexOptions& options, const WorldShare* world = nullptr);

struct ShardLayout {
  ShardRanges images, captions;
};

// An opened index: the model, the memory-mapped store, the searchers. A sharded index opens as one
// gallery of all its shards' items (ids run through shard 0's, then shard 1's, ...): its searchers
// ask every shard and merge their answers (search/shards.h).
class GalleryIndex {
 public:
  // `expected_model`: when not empty, a model directory whose fingerprint must be the index's.
  // `after_manifest_read`, when set, runs between reading the manifest and opening the files it
  // names: where a reader races a writer that commits (the test of that race commits an `add` there).
  static std::shared_ptr<GalleryIndex> open(const std::string& dir, torch::Device device = torch::kCPU,
                                            const std::string& expected_model = "",
                                            const std::function<void()>& after_manifest_read = {});

  // Shard `shard` of the sharded index at `dir`, alone: what a rank of a sharded search holds.
  static std::shared_ptr<GalleryIndex> open_shard(const std::string& dir, int shard,
                                                  torch::Device device = torch::kCPU);
  // Which items each shard of the sharded index at `dir` holds, as its shards.json lists them.
  static ShardLayout shard_layout(const std::string& dir);
  const std::string& dir() const;
  const Model& model() const;
  std::int64_t num_images() const;
  std::int64_t num_captions() const;
  int captions_per_image() const;
  bool has_shortlist() const;         // a global head and FAISS indexes
  std::string faiss_factory() const;  // empty without a shortlist
  std::string store_dtype() const;
  const std::vector<std::string>& caption_texts() const;
  // Whether every image has an ImageInfo (a description, picture, boxes, twin).
  bool described() const;
  // Image `image`'s info, read from the mapped file on each call; empty when not described().
  ImageInfo image_info(std::int64_t image) const;
  // Image `image`'s stored thumbnail (JPEG bytes); empty when it has none or not described().
  std::string thumbnail(std::int64_t image) const;
  std::shared_ptr<const ItemStore> store() const;
  // The global embeddings (n, g) float32 (memory-mapped); undefined without a head.
  torch::Tensor image_globals() const;
  torch::Tensor caption_globals() const;

  // shortlist > 0: FAISS shortlist of that many items re-ranked by IMRAM (kAutoShortlist: by the
  // side's gallery size); 0: IMRAM over the whole gallery. A shortlist larger than the gallery is
  // clamped. prefilter > shortlist: FAISS gives that many, IMRAM's first step keeps `shortlist`
  // of them (RerankSearcher).
  // step1: the coded first step's list (RerankSearcher), where the index keeps codes of the side.
  // `gallery_items` above this index's own: it is a shard of that gallery, and the lists are the
  // whole gallery's, of which it searches its part (shard_list); a sharded index gives each shard
  // its whole gallery.
  std::shared_ptr<const Searcher> searcher(GallerySide side, std::int64_t shortlist, std::int64_t prefilter = 0,
                                           std::int64_t step1 = kAutoStep1, std::int64_t gallery_items = 0) const;
  // `lists` as a search of this side runs them (resolve_lists, search/search_params.h: the
  // automatic ones by this gallery's size and its items' values), and a searcher with them: what
  // every command searches with, and reports.
  SearchLists resolved_lists(GallerySide side, const SearchLists& lists) const;
  std::shared_ptr<const Searcher> searcher(GallerySide side, const SearchLists& resolved) const;
  // Whether the index keeps codes of this side's fragments (docs/index.md#codes).
  bool has_codes(GallerySide side) const;
  std::shared_ptr<const Searcher> stage1(GallerySide side) const;  // FAISS alone

  EncodedQuery text_query(const std::string& text) const;
  EncodedQuery image_query(std::int64_t image) const;  // from the store: nothing is re-encoded

  // Recomputes every store file's checksum (thumbnails included) and reads every image's info;
  // throws naming the first file that is wrong.
  void verify() const;

  // Of a sharded index: the shards, in order (empty for an index of one directory).
  std::vector<std::shared_ptr<const GalleryIndex>> shards() const;

  struct Impl;
  explicit GalleryIndex(std::unique_ptr<Impl> impl);
  ~GalleryIndex();

 private:
  const ShardRanges& ranges_of(GallerySide side) const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace imram
