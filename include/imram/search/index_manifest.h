#pragma once
// An index directory's manifest (docs/index.md): its counts, checked against the sizes of the
// files that hold the items. LibTorch-free, so that fuzz/ can drive the parser.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "imram/search/residual_buckets.h"
#include "imram/util/fnv.h"

namespace imram {

inline constexpr const char* kIndexFormat = "imram-index";
inline constexpr int kIndexFormatVersion = 5;
// Version 4 lacks only what version 5 added (residuals, an index without its exact store): read as it is.
inline constexpr int kOldestIndexFormatVersion = 4;
// The files of the item store, one manifest entry each, beside the exact store (below).
inline constexpr const char* kStoreFiles[] = {"word_offsets.bin",     "image_globals.bin",    "caption_globals.bin",
                                              "captions.txt",         "gallery_images.jsonl", "thumbnails.bin",
                                              "thumbnail_offsets.bin"};

// The exact store: the encoded fragments as they are (absent from an index built without it).
inline constexpr const char* kExactStoreFiles[] = {"regions.bin", "words.bin"};

// The store files of codes (search/fragment_codes.h, docs/index.md#codes), present only when the
// manifest has a "codes" entry: each fragment's centroid id (int32), each item's Gram matrix of its
// fragments (the store's type; a caption's is its length squared), and the two codebooks
// (float32, centroids x d, written whole when trained).
inline constexpr const char* kCodesFiles[] = {"region_codes.bin", "region_grams.bin", "word_codes.bin",
                                              "word_grams.bin"};
inline constexpr const char* kCodebookFiles[] = {"region_codebook.bin", "word_codebook.bin"};

// The fragments' compressed residuals (search/residual_codes.h), present only when the manifest's
// codes count residual bits: bits x d / 8 bytes per fragment.
inline constexpr const char* kResidualFiles[] = {"region_residuals.bin", "word_residuals.bin"};

// The store files of memory halves (docs/index.md), present only when the manifest counts them.
inline constexpr const char* kMemoryHalvesFiles[] = {"region_halves.bin", "word_halves.bin"};

enum class StoreDType { Float16, Float32 };
std::string to_string(StoreDType dtype);
StoreDType parse_store_dtype(const std::string& text);
std::size_t element_size(StoreDType dtype);

// A store file: its committed size and the FNV-1a-64 of those bytes.
struct FileEntry {
  std::uint64_t bytes = 0;
  std::uint64_t hash = kFnv1aOffset;
};

// manifest.json, the index's commit point (docs/index.md).
struct Manifest {
  std::string model_fingerprint;
  std::int64_t images = 0, captions = 0, words = 0;
  std::int64_t described =
      0;  // images with an ImageInfo line (and a thumbnail range); kept only while all images have one
  std::int64_t regions = 0, embed_size = 0, global_dim = 0;
  int captions_per_image = 0;  // 0: captions are not tied to images (e.g. a benchmark's gallery)
  std::string faiss_factory;
  StoreDType store = StoreDType::Float16;
  // Floats per region and per word of stored memory halves (model/imram.h); 0: none stored.
  std::int64_t memory_halves = 0;
  // Codes of the fragments (kCodesFiles): kept when `codes`; each codebook's centroids, 0 until
  // its side holds a fragment (then every fragment of the side has its code).
  bool codes = false;
  std::int64_t region_centroids = 0, word_centroids = 0;
  // Compressed residuals of the fragments (kResidualFiles), with codes only: kept when
  // residual_bits > 0, each side with its buckets (learned with its codebook, bits 0 until then).
  int residual_bits = 0;
  ResidualBuckets region_buckets, word_buckets;
  // Whether regions.bin and words.bin hold the encoded fragments. An index built without them
  // decodes every fragment it reads from its codes and residuals: its scores are approximate.
  bool exact_store = true;
  std::int64_t generation = 0;
  nlohmann::ordered_json sources = nlohmann::ordered_json::array();
  std::map<std::string, FileEntry> files;
};

// The FAISS index of one side and generation: images.<gen>.faiss or captions.<gen>.faiss.
std::string faiss_file(std::int64_t generation, bool images);

std::string checksum_hex(std::uint64_t value);
nlohmann::ordered_json manifest_json(const Manifest& m);
// Reads DIR/manifest.json; throws imram::Error naming it for anything malformed, and for counts
// that disagree with the sizes its entries give the store files.
Manifest read_manifest(const std::string& dir);

}  // namespace imram
