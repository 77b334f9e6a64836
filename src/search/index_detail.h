#pragma once
// What the index's writer (index_writer.cpp) and reader (index_dir.cpp) share beyond the
// manifest (search/index_manifest.h): the store's element type and the scenes file's name.
#include <torch/types.h>

#include "imram/search/index_manifest.h"

namespace imram::index_detail {

inline torch::ScalarType scalar_type(StoreDType dtype) {
  return dtype == StoreDType::Float16 ? torch::kHalf : torch::kFloat32;
}

// The synthetic world's scene descriptions travel with the index as `gallery_scenes.jsonl`.
constexpr const char* kScenesSplit = "gallery";

}  // namespace imram::index_detail
