#include "imram/metrics/twin_accuracy.h"

#include <algorithm>

#include "imram/data/image_info.h"
#include "imram/error.h"

namespace imram {

double twin_accuracy(const double* sims, std::int64_t images, std::int64_t captions,
                     const std::vector<std::int64_t>& twin_of_image, int captions_per_image) {
  if (captions_per_image < 1)
    throw Error("twin accuracy: captions per image must be positive, got " + std::to_string(captions_per_image));
  if (images < 1 || captions != images * captions_per_image)
    throw Error("twin accuracy: " + std::to_string(captions) + " captions for " + std::to_string(images) +
                " images, expected " + std::to_string(captions_per_image) + " per image");
  if (static_cast<std::int64_t>(twin_of_image.size()) != images)
    throw Error("twin accuracy: " + std::to_string(twin_of_image.size()) + " twins for " + std::to_string(images) +
                " images");
  std::int64_t judged = 0, won = 0;
  for (std::int64_t j = 0; j < captions; ++j) {
    const std::int64_t own = j / captions_per_image;
    const std::int64_t twin = twin_of_image[std::size_t(own)];
    if (twin == -1) continue;
    if (twin < 0 || twin >= images || twin == own)
      throw Error("twin accuracy: image " + std::to_string(own) + " has twin " + std::to_string(twin) +
                  ", not another of the " + std::to_string(images) + " images");
    ++judged;
    won += sims[own * captions + j] > sims[twin * captions + j];
  }
  if (judged == 0) throw Error("twin accuracy: no image has a twin");
  return static_cast<double>(won) / static_cast<double>(judged);
}

std::vector<std::int64_t> read_twins(const std::string& dir, const std::string& split, std::int64_t images) {
  std::vector<std::int64_t> twins;
  for (const auto& info : dataset_image_info(dir, split, images)) twins.push_back(info.twin);
  if (std::all_of(twins.begin(), twins.end(), [](std::int64_t twin) { return twin < 0; })) twins.clear();
  return twins;
}

}  // namespace imram
