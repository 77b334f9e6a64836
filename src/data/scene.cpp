#include "imram/data/scene.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "imram/error.h"
#include "imram/util/xml_escape.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

const char* const kRowNames[kSyntheticGrid] = {"top", "middle", "bottom"};
const char* const kColNames[kSyntheticGrid] = {"left", "center", "right"};

std::string cell_name(int row, int col) {
  if (row == 1 && col == 1) return "center";
  if (row == 1) return kColNames[col];
  if (col == 1) return kRowNames[row];
  return std::string(kRowNames[row]) + " " + kColNames[col];
}

// ---------------------------------------------------------------------------------------------
// The drawing: shapes on the grid, at the sizes the regions' boxes assume.

constexpr double kCell = kSceneDrawingSize / kSyntheticGrid;
constexpr double kPi = 3.14159265358979323846;

Rgb fill_of(const std::string& colour) {
  static const std::vector<std::pair<std::string, Rgb>> fills = {
      {"red", {0xd6, 0x27, 0x28}},    {"blue", {0x1f, 0x77, 0xb4}},   {"green", {0x2c, 0xa0, 0x2c}},
      {"yellow", {0xf2, 0xd0, 0x24}}, {"purple", {0x8e, 0x44, 0xad}}, {"orange", {0xff, 0x7f, 0x0e}},
      {"pink", {0xf7, 0x8f, 0xb3}},   {"white", {0xff, 0xff, 0xff}},  {"black", {0x11, 0x11, 0x11}},
      {"grey", {0x8a, 0x8a, 0x8a}},   {"brown", {0x8c, 0x56, 0x4b}},  {"cyan", {0x17, 0xbe, 0xcf}}};
  for (const auto& [name, fill] : fills)
    if (name == colour) return fill;
  return {0x77, 0x77, 0x77};
}

double radius_of(int size) { return size == 0 ? 16 : size == 1 ? 26 : 38; }

using Outline = std::vector<std::array<double, 2>>;

Outline regular(int corners, double start, double inner = 0) {
  Outline points;
  const int count = inner > 0 ? 2 * corners : corners;
  for (int i = 0; i < count; ++i) {
    const double angle = start + 2 * kPi * i / count;
    const double length = inner > 0 && i % 2 ? inner : 1.0;
    points.push_back({length * std::cos(angle), length * std::sin(angle)});
  }
  return points;
}

constexpr int kCurveSteps = 24;  // polygon points per curve: smooth at the drawing's size

Outline ellipse(double rx, double ry) {
  Outline points;
  for (int i = 0; i < 2 * kCurveSteps; ++i) {
    const double angle = 2 * kPi * i / (2 * kCurveSteps);
    points.push_back({rx * std::cos(angle), ry * std::sin(angle)});
  }
  return points;
}

// A cubic Bezier from p0 to p3, without its first point.
void bezier(Outline& out, std::array<double, 2> p0, std::array<double, 2> p1, std::array<double, 2> p2,
            std::array<double, 2> p3) {
  for (int i = 1; i <= kCurveSteps; ++i) {
    const double t = double(i) / kCurveSteps, u = 1 - t;
    out.push_back({u * u * u * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t * t * t * p3[0],
                   u * u * u * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t * t * t * p3[1]});
  }
}

// The outline of a shape of radius 1 centred on the origin.
Outline unit_outline(const std::string& shape) {
  if (shape == "oval") return ellipse(1, 0.6);
  if (shape == "square") return {{-0.8, -0.8}, {0.8, -0.8}, {0.8, 0.8}, {-0.8, 0.8}};
  if (shape == "triangle") return regular(3, -kPi / 2);
  if (shape == "star") return regular(5, -kPi / 2, 0.45);
  if (shape == "diamond") return {{0, -1}, {0.65, 0}, {0, 1}, {-0.65, 0}};
  if (shape == "hexagon") return regular(6, 0);
  if (shape == "pentagon") return regular(5, -kPi / 2);
  if (shape == "cross") {
    const double a = 0.3;
    return {{-a, -1}, {a, -1}, {a, -a}, {1, -a}, {1, a}, {a, a}, {a, 1}, {-a, 1}, {-a, a}, {-1, a}, {-1, -a}, {-a, -a}};
  }
  if (shape == "arrow") return {{-1, -0.3}, {0.2, -0.3}, {0.2, -0.7}, {1, 0}, {0.2, 0.7}, {0.2, 0.3}, {-1, 0.3}};
  if (shape == "heart") {
    Outline points{{0, 0.9}};
    bezier(points, {0, 0.9}, {-1.4, -0.1}, {-0.6, -1.2}, {0, -0.4});
    bezier(points, {0, -0.4}, {0.6, -1.2}, {1.4, -0.1}, {0, 0.9});
    points.pop_back();  // back at the start
    return points;
  }
  if (shape == "crescent") {
    // The part of the unit circle outside a smaller circle shifted right: from the top tip round
    // the left to the bottom tip on the outer circle, back up on the inner one.
    const double inner_x = 0.5, inner_r = 0.85;
    const double tip_x = (1 - inner_r * inner_r + inner_x * inner_x) / (2 * inner_x);
    const double tip_y = std::sqrt(1 - tip_x * tip_x);
    const double outer_tip = std::atan2(tip_y, tip_x), inner_tip = std::atan2(tip_y, tip_x - inner_x);
    Outline points;
    for (int i = 0; i <= 2 * kCurveSteps; ++i) {
      const double angle = -outer_tip - (2 * kPi - 2 * outer_tip) * i / (2 * kCurveSteps);
      points.push_back({std::cos(angle), std::sin(angle)});
    }
    for (int i = 1; i < 2 * kCurveSteps; ++i) {
      const double angle = inner_tip + (2 * kPi - 2 * inner_tip) * i / (2 * kCurveSteps);
      points.push_back({inner_x + inner_r * std::cos(angle), inner_r * std::sin(angle)});
    }
    return points;
  }
  return ellipse(1, 1);  // circle
}

Box object_box(const SceneObject& object) {
  const double r = radius_of(object.size) + 6;
  const double cx = (object.col + 0.5) * kCell, cy = (object.row + 0.5) * kCell;
  return {(cx - r) / kSceneDrawingSize, (cy - r) / kSceneDrawingSize, 2 * r / kSceneDrawingSize,
          2 * r / kSceneDrawingSize};
}

std::string hex(const Rgb& colour) {
  char text[8];
  std::snprintf(text, sizeof text, "#%02x%02x%02x", colour[0], colour[1], colour[2]);
  return text;
}

std::string scene_svg(const Scene& scene) {
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << kSceneDrawingSize << " " << kSceneDrawingSize
      << "\" width=\"" << kSceneDrawingSize << "\" height=\"" << kSceneDrawingSize << "\" role=\"img\">"
      << "<title>" << xml_escape(describe(scene)) << "</title>"
      << "<rect width=\"100%\" height=\"100%\" fill=\"" << hex(kSceneBackground) << "\"/>";
  for (int i = 1; i < kSyntheticGrid; ++i)
    out << "<path d=\"M " << i * kCell << " 0 V " << kSceneDrawingSize << " M 0 " << i * kCell << " H "
        << kSceneDrawingSize << "\" stroke=\"" << hex(kSceneGridLine) << "\" stroke-width=\"1\"/>";
  out.precision(4);
  for (const auto& shape : scene_shapes(scene)) {
    out << "<polygon points=\"";
    for (const auto& [x, y] : shape.outline) out << x << "," << y << " ";
    out << "\" fill=\"" << hex(shape.fill) << "\" stroke=\"" << hex(kSceneOutline) << "\" stroke-width=\"1.5\"/>";
  }
  out << "</svg>";
  return out.str();
}

}  // namespace

std::vector<DrawnShape> scene_shapes(const Scene& scene) {
  std::vector<DrawnShape> shapes;
  for (const auto& object : scene.objects) {
    const double cx = (object.col + 0.5) * kCell, cy = (object.row + 0.5) * kCell, r = radius_of(object.size);
    DrawnShape shape;
    shape.fill = fill_of(synthetic_colours()[std::size_t(object.colour)]);
    for (const auto& [x, y] : unit_outline(synthetic_shapes()[std::size_t(object.shape)]))
      shape.outline.push_back({cx + x * r, cy + y * r});
    shapes.push_back(std::move(shape));
  }
  return shapes;
}

ImageInfo image_info(const Scene& scene) {
  ImageInfo info;
  info.description = describe(scene);
  info.twin = scene.twin;
  info.drawing = scene_svg(scene);
  for (const int object : scene.region_objects)
    info.regions.push_back(object < 0 ? std::nullopt
                                      : std::optional<Box>(object_box(scene.objects[std::size_t(object)])));
  return info;
}

const char* grid_row_name(int row) { return kRowNames[row]; }
const char* grid_col_name(int col) { return kColNames[col]; }

std::string describe(const Scene& scene) {
  std::vector<SceneObject> objects = scene.objects;
  std::stable_sort(objects.begin(), objects.end(), [](const SceneObject& a, const SceneObject& b) {
    return a.row != b.row ? a.row < b.row : a.col < b.col;
  });
  std::string text;
  for (const auto& object : objects) {
    if (!text.empty()) text += ", ";
    text += synthetic_sizes()[std::size_t(object.size)] + " " + synthetic_colours()[std::size_t(object.colour)] + " " +
            synthetic_shapes()[std::size_t(object.shape)] + " (" + cell_name(object.row, object.col) + ")";
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// The scenes file.

std::string scenes_path(const std::string& dir, const std::string& split) {
  return (fs::path(dir) / (split + "_scenes.jsonl")).string();
}

std::string scene_json(const Scene& scene) {
  nlohmann::ordered_json objects = nlohmann::ordered_json::array();
  for (const auto& object : scene.objects) {
    nlohmann::ordered_json item;
    item["shape"] = synthetic_shapes()[std::size_t(object.shape)];
    item["colour"] = synthetic_colours()[std::size_t(object.colour)];
    item["size"] = synthetic_sizes()[std::size_t(object.size)];
    item["position"] = cell_name(object.row, object.col);
    objects.push_back(std::move(item));
  }
  nlohmann::ordered_json json;
  json["objects"] = std::move(objects);
  if (!scene.region_objects.empty()) json["regions"] = scene.region_objects;
  if (scene.twin >= 0) {
    json["twin"] = scene.twin;
    json["swap"] = scene.swap == TwinSwap::Colours ? "colours" : "positions";
  }
  return json.dump();
}

std::vector<Scene> read_scenes(const std::string& dir, const std::string& split) {
  const std::string path = scenes_path(dir, split);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open scenes file");
  return parse_scenes(in, path);
}

std::vector<Scene> parse_scenes(std::istream& in, const std::string& path) {
  std::vector<Scene> scenes;
  std::vector<std::size_t> line_of;
  std::string line;
  std::size_t number = 0;
  const auto fail = [&](std::size_t at, const std::string& what) {
    throw Error(path + ":" + std::to_string(at) + ": " + what);
  };
  const auto lookup = [&](const nlohmann::json& item, const char* field, const std::vector<std::string>& names) {
    if (!item.contains(field) || !item[field].is_string())
      fail(number, std::string("object without a \"") + field + "\" string");
    const auto name = item[field].get<std::string>();
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      fail(number, "unknown " + std::string(field) + " \"" + name + "\" (expected one of " + known + ")");
    }
    return static_cast<int>(it - names.begin());
  };
  std::vector<std::string> cells;
  for (int r = 0; r < kSyntheticGrid; ++r)
    for (int c = 0; c < kSyntheticGrid; ++c) cells.push_back(cell_name(r, c));
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail(number, std::string("not valid JSON (") + e.what() + ")");
    }
    if (!json.is_object() || !json.contains("objects") || !json["objects"].is_array() || json["objects"].empty())
      fail(number, "expected an object with a non-empty \"objects\" array");
    Scene scene;
    for (const auto& item : json["objects"]) {
      if (!item.is_object()) fail(number, "each entry of \"objects\" must be an object");
      SceneObject object;
      object.shape = lookup(item, "shape", synthetic_shapes());
      object.colour = lookup(item, "colour", synthetic_colours());
      object.size = lookup(item, "size", synthetic_sizes());
      const int cell = lookup(item, "position", cells);
      object.row = cell / kSyntheticGrid;
      object.col = cell % kSyntheticGrid;
      scene.objects.push_back(object);
    }
    if (json.contains("twin")) {
      if (!json["twin"].is_number_integer()) fail(number, "\"twin\" must be an image index");
      scene.twin = json["twin"].get<std::int64_t>();
      if (json.contains("swap") && !json["swap"].is_string()) fail(number, "\"swap\" must be a string");
      const auto swap = json.value("swap", std::string("colours"));
      if (swap != "colours" && swap != "positions")
        fail(number, "\"swap\" must be \"colours\" or \"positions\", got \"" + swap + "\"");
      scene.swap = swap == "colours" ? TwinSwap::Colours : TwinSwap::Positions;
    }
    if (json.contains("regions")) {
      const auto objects = static_cast<int>(scene.objects.size());
      if (!json["regions"].is_array()) fail(number, "\"regions\" must be an array of object indices");
      for (const auto& region : json["regions"]) {
        if (!region.is_number_integer() || region.get<std::int64_t>() < -1 || region.get<std::int64_t>() >= objects)
          fail(number,
               "\"regions\" entries must be -1 or an index of \"objects\" (0.." + std::to_string(objects - 1) + ")");
        scene.region_objects.push_back(region.get<int>());
      }
    }
    scenes.push_back(std::move(scene));
  }
  if (scenes.empty()) throw Error(path + ": no scenes in file");
  const auto count = static_cast<std::int64_t>(scenes.size());
  for (std::int64_t i = 0; i < count; ++i) {
    const auto twin = scenes[std::size_t(i)].twin;
    if (twin != -1 && (twin < 0 || twin >= count || twin == i))
      fail(std::size_t(i) + 1,
           "twin " + std::to_string(twin) + " is not another image of the " + std::to_string(count) + " in the file");
  }
  return scenes;
}

}  // namespace imram
