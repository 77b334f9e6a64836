#pragma once
// Twin accuracy: on the synthetic shapes world, how often a caption scores its own image above
// its twin, the image with the same shapes and colours bound differently. A bag-of-words matcher
// sits at 0.5 (or below, counting ties as failures); only binding words to regions lifts it.
#include <cstdint>
#include <string>
#include <vector>

namespace imram {

// sims is row-major (images x captions); caption j belongs to image j / captions_per_image, and
// twin_of_image[i] is the twin of image i (-1: none, its captions are left out). Returns the
// fraction of the remaining captions whose own image scores strictly higher than its twin.
double twin_accuracy(const double* sims, std::int64_t images, std::int64_t captions,
                     const std::vector<std::int64_t>& twin_of_image, int captions_per_image = 5);

// The twin of each of the `images` images of a split (-1 where an image has none), from the
// split's image info (data/image_info.h); empty when it has none or names no twin at all.
std::vector<std::int64_t> read_twins(const std::string& dir, const std::string& split, std::int64_t images);

}  // namespace imram
