#pragma once
// Pixels of the synthetic world: a scene painted as the picture its SVG drawing shows, so that the
// photos path (imram features) can be tested end to end on pictures whose content is known.
#include <cstdint>
#include <string>

#include <opencv2/core/mat.hpp>

#include "imram/data/scene.h"

namespace imram {

// A size x size RGB picture (CV_8UC3), anti-aliased.
cv::Mat render_scene(const Scene& scene, int size);

// The picture of every scene of a split of a synthetic dataset (its {split}_scenes.jsonl), as
// {dir}/pictures/{split}/{image:06d}.{extension} ("png" or "jpg"), size x size; returns how many.
std::int64_t render_split_pictures(const std::string& dir, const std::string& split, int size,
                                   const std::string& extension, int threads);

}  // namespace imram
