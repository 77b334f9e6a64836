#pragma once
// `imram index add INDEX --images DIR --backbone MODEL.pt`: a folder of pictures straight into an
// index, without captions. The backbone's region features (features/extraction.h) go through a
// temporary dataset beside the index, removed afterwards; each picture's boxes and thumbnail are
// stored with it (docs/index.md), so that the page shows and explains the photos.
#include <cstdint>
#include <string>

#include "imram/features/extraction.h"

namespace imram {

struct PicturesAdded {
  std::int64_t images = 0;   // pictures now in the index
  std::int64_t skipped = 0;  // pictures that could not be used (each a warning)
};

// `options.feature_dim` is set to the index model's img_dim (a backbone of another size is refused
// at its first batch, the index unchanged); a detector's `options.regions` 0 means the index's
// regions per image.
// `device`: where the backbone and the model run (cpu, cuda, cuda:N). Holds the index's writer
// lock from start to commit.
PicturesAdded add_pictures_to_index(const std::string& index_dir, const std::string& pictures, FeatureOptions options,
                                    const std::string& device, const FeatureLog& warn);

}  // namespace imram
