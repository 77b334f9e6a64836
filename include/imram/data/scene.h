#pragma once
// A scene of the synthetic shapes world (data/synthetic.h): 2-5 coloured shapes on a 3x3 grid,
// which region of the image's features shows which shape, and its twin. Scenes travel as
// `{split}_scenes.jsonl` beside a generated dataset; an index keeps what people see of them (a
// description, a drawing, the regions' boxes: ImageInfo).
#include <array>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "imram/data/image_info.h"

namespace imram {

inline constexpr int kSyntheticGrid = 3;  // rows (top, middle, bottom) x columns (left, center, right)

// Canonical names; SceneObject fields index these tables.
const std::vector<std::string>& synthetic_shapes();
const std::vector<std::string>& synthetic_colours();
const std::vector<std::string>& synthetic_sizes();  // small, medium, large
const char* grid_row_name(int row);                 // top, middle, bottom
const char* grid_col_name(int col);                 // left, center, right

struct SceneObject {
  int shape = 0;
  int colour = 0;
  int size = 0;
  int row = 0;  // 0 top, 1 middle, 2 bottom
  int col = 0;  // 0 left, 1 center, 2 right
  bool operator==(const SceneObject& other) const {
    return shape == other.shape && colour == other.colour && size == other.size && row == other.row && col == other.col;
  }
};

// What a twin changed: the colours of two objects, or their places.
enum class TwinSwap { Colours, Positions };

struct Scene {
  std::vector<SceneObject> objects;  // distinct cells, distinct (shape, colour) pairs
  std::int64_t twin = -1;            // index of the twin image in the same split, -1 when none
  TwinSwap swap = TwinSwap::Colours;
  // Which object each region's features were made from (-1: background or clutter), so that a
  // picture of the scene can show where attention went; empty in scenes files without it.
  std::vector<int> region_objects;
};

// `{dir}/{split}_scenes.jsonl`, one scene per line; throws naming the file and line.
std::string scenes_path(const std::string& dir, const std::string& split);
std::vector<Scene> read_scenes(const std::string& dir, const std::string& split);
// The same from a stream; `path` names it in errors.
std::vector<Scene> parse_scenes(std::istream& in, const std::string& path);
std::string scene_json(const Scene& scene);  // one line of the scenes file

// "large red circle (top left), small blue square (bottom right)"
std::string describe(const Scene& scene);

// What the drawing of a scene shows, in its own units (a kSceneDrawingSize square, y down): the
// outline of each object (curves as polygons) and its fill. The SVG drawing and the rendered
// pictures (image/render.h) draw the same shapes.
inline constexpr double kSceneDrawingSize = 300;
using Rgb = std::array<unsigned char, 3>;
inline constexpr Rgb kSceneBackground{0xf4, 0xf1, 0xea};
inline constexpr Rgb kSceneGridLine{0xe2, 0xdd, 0xd0};
inline constexpr Rgb kSceneOutline{0x33, 0x33, 0x33};
struct DrawnShape {
  std::vector<std::array<double, 2>> outline;
  Rgb fill{};
};
std::vector<DrawnShape> scene_shapes(const Scene& scene);

// What people see of a scene: its description, an SVG drawing, each region's box (the box of
// the object it was made from), its twin.
ImageInfo image_info(const Scene& scene);

}  // namespace imram
