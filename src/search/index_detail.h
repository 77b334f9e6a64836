#pragma once
// What the index's writer (index_writer.cpp) and reader (index_dir.cpp) share beyond the
// manifest (search/index_manifest.h): the store's element type and the image info file's name.
#include <torch/types.h>

#include <string>

#include "imram/search/index_manifest.h"

namespace imram::index_detail {

inline torch::ScalarType scalar_type(StoreDType dtype) {
  return dtype == StoreDType::Float16 ? torch::kHalf : torch::kFloat32;
}

// What is known of each image beyond its features, one ImageInfo line per image.
constexpr const char* kImageInfoFile = "gallery_images.jsonl";
// Each described image's thumbnail (JPEG), concatenated, and int64 offsets into it (described + 1
// of them): image i's thumbnail is bytes [offset i, offset i+1), empty when it has none.
constexpr const char* kThumbnailsFile = "thumbnails.bin";
constexpr const char* kThumbnailOffsetsFile = "thumbnail_offsets.bin";

// A sharded index (docs/index.md#shards): this file lists its shards, each an index directory
// inside it.
constexpr const char* kShardsFile = "shards.json";
constexpr const char* kShardedIndexFormat = "imram-sharded-index";

}  // namespace imram::index_detail
