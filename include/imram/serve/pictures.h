#pragma once
// Pictures of the synthetic shapes world for people: an SVG of a scene drawn from its scenes
// file entry, and the box of each region in it, so that attention over regions can be shown
// where the regions are.
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "imram/data/synthetic.h"

namespace imram {

inline constexpr double kPictureSize = 300;  // the SVG's width and height, in its own units

// [x, y, width, height] in picture units.
using Box = std::array<double, 4>;

std::string scene_svg(const Scene& scene);
// Per region: the box of the object it was made from; nullopt for background and clutter,
// which cover no object. Empty when the scene does not record its regions.
std::vector<std::optional<Box>> region_boxes(const Scene& scene);
// A picture that says there is none, and why.
std::string placeholder_svg(const std::string& message);

}  // namespace imram
