#include "imram/data/scene.h"

#include <algorithm>
#include <cmath>
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

constexpr double kDrawingSize = 300;  // the SVG's width and height, in its own units
constexpr double kCell = kDrawingSize / kSyntheticGrid;
constexpr double kPi = 3.14159265358979323846;

const char* fill_of(const std::string& colour) {
  static const std::vector<std::pair<std::string, const char*>> fills = {
      {"red", "#d62728"},    {"blue", "#1f77b4"},   {"green", "#2ca02c"}, {"yellow", "#f2d024"},
      {"purple", "#8e44ad"}, {"orange", "#ff7f0e"}, {"pink", "#f78fb3"},  {"white", "#ffffff"},
      {"black", "#111111"},  {"grey", "#8a8a8a"},   {"brown", "#8c564b"}, {"cyan", "#17becf"}};
  for (const auto& [name, fill] : fills)
    if (name == colour) return fill;
  return "#777777";
}

double radius_of(int size) { return size == 0 ? 16 : size == 1 ? 26 : 38; }

std::string polygon(double cx, double cy, const std::vector<std::pair<double, double>>& unit_points, double r) {
  std::ostringstream out;
  out << "<polygon points=\"";
  for (const auto& [x, y] : unit_points) out << cx + x * r << "," << cy + y * r << " ";
  out << "\"";
  return out.str();
}

std::vector<std::pair<double, double>> regular(int corners, double start, double inner = 0) {
  std::vector<std::pair<double, double>> points;
  const int count = inner > 0 ? 2 * corners : corners;
  for (int i = 0; i < count; ++i) {
    const double angle = start + 2 * kPi * i / count;
    const double length = inner > 0 && i % 2 ? inner : 1.0;
    points.push_back({length * std::cos(angle), length * std::sin(angle)});
  }
  return points;
}

std::string shape_element(const std::string& shape, double cx, double cy, double r) {
  std::ostringstream out;
  if (shape == "circle") {
    out << "<circle cx=\"" << cx << "\" cy=\"" << cy << "\" r=\"" << r << "\"";
  } else if (shape == "oval") {
    out << "<ellipse cx=\"" << cx << "\" cy=\"" << cy << "\" rx=\"" << r << "\" ry=\"" << 0.6 * r << "\"";
  } else if (shape == "square") {
    out << "<rect x=\"" << cx - 0.8 * r << "\" y=\"" << cy - 0.8 * r << "\" width=\"" << 1.6 * r << "\" height=\""
        << 1.6 * r << "\"";
  } else if (shape == "triangle") {
    out << polygon(cx, cy, regular(3, -kPi / 2), r);
  } else if (shape == "star") {
    out << polygon(cx, cy, regular(5, -kPi / 2, 0.45), r);
  } else if (shape == "diamond") {
    out << polygon(cx, cy, {{0, -1}, {0.65, 0}, {0, 1}, {-0.65, 0}}, r);
  } else if (shape == "hexagon") {
    out << polygon(cx, cy, regular(6, 0), r);
  } else if (shape == "pentagon") {
    out << polygon(cx, cy, regular(5, -kPi / 2), r);
  } else if (shape == "cross") {
    const double a = 0.3;
    out << polygon(cx, cy, {{-a, -1}, {a, -1}, {a, -a}, {1, -a}, {1, a}, {a, a}, {a, 1}, {-a, 1}, {-a, a}, {-1, a},
                            {-1, -a}, {-a, -a}},
                   r);
  } else if (shape == "arrow") {
    out << polygon(cx, cy, {{-1, -0.3}, {0.2, -0.3}, {0.2, -0.7}, {1, 0}, {0.2, 0.7}, {0.2, 0.3}, {-1, 0.3}}, r);
  } else if (shape == "heart") {
    out << "<path d=\"M " << cx << " " << cy + 0.9 * r << " C " << cx - 1.4 * r << " " << cy - 0.1 * r << " "
        << cx - 0.6 * r << " " << cy - 1.2 * r << " " << cx << " " << cy - 0.4 * r << " C " << cx + 0.6 * r << " "
        << cy - 1.2 * r << " " << cx + 1.4 * r << " " << cy - 0.1 * r << " " << cx << " " << cy + 0.9 * r << " Z\"";
  } else if (shape == "crescent") {
    out << "<path d=\"M " << cx + 0.3 * r << " " << cy - r << " A " << r << " " << r << " 0 1 0 " << cx + 0.3 * r
        << " " << cy + r << " A " << 0.8 * r << " " << 0.8 * r << " 0 1 1 " << cx + 0.3 * r << " " << cy - r
        << " Z\"";
  } else {
    out << "<circle cx=\"" << cx << "\" cy=\"" << cy << "\" r=\"" << r << "\"";
  }
  return out.str();
}

Box object_box(const SceneObject& object) {
  const double r = radius_of(object.size) + 6;
  const double cx = (object.col + 0.5) * kCell, cy = (object.row + 0.5) * kCell;
  return {(cx - r) / kDrawingSize, (cy - r) / kDrawingSize, 2 * r / kDrawingSize, 2 * r / kDrawingSize};
}


std::string scene_svg(const Scene& scene) {
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << kDrawingSize << " " << kDrawingSize
      << "\" width=\"" << kDrawingSize << "\" height=\"" << kDrawingSize << "\" role=\"img\">"
      << "<title>" << xml_escape(describe(scene)) << "</title>"
      << "<rect width=\"100%\" height=\"100%\" fill=\"#f4f1ea\"/>";
  for (int i = 1; i < kSyntheticGrid; ++i)
    out << "<path d=\"M " << i * kCell << " 0 V " << kDrawingSize << " M 0 " << i * kCell << " H " << kDrawingSize
        << "\" stroke=\"#e2ddd0\" stroke-width=\"1\"/>";
  for (const auto& object : scene.objects) {
    const auto& colour = synthetic_colours()[std::size_t(object.colour)];
    out << shape_element(synthetic_shapes()[std::size_t(object.shape)], (object.col + 0.5) * kCell,
                         (object.row + 0.5) * kCell, radius_of(object.size))
        << " fill=\"" << fill_of(colour) << "\" stroke=\"#333\" stroke-width=\"1.5\"/>";
  }
  out << "</svg>";
  return out.str();
}

}  // namespace

ImageInfo image_info(const Scene& scene) {
  ImageInfo info;
  info.description = describe(scene);
  info.twin = scene.twin;
  info.drawing = scene_svg(scene);
  for (const int object : scene.region_objects)
    info.regions.push_back(object < 0 ? std::nullopt : std::optional<Box>(object_box(scene.objects[std::size_t(object)])));
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
    text += synthetic_sizes()[std::size_t(object.size)] + " " +
            synthetic_colours()[std::size_t(object.colour)] + " " +
            synthetic_shapes()[std::size_t(object.shape)] + " (" + cell_name(object.row, object.col) +
            ")";
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
  const auto lookup = [&](const nlohmann::json& item, const char* field,
                          const std::vector<std::string>& names) {
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
    if (!json.is_object() || !json.contains("objects") || !json["objects"].is_array() ||
        json["objects"].empty())
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
          fail(number, "\"regions\" entries must be -1 or an index of \"objects\" (0.." +
                           std::to_string(objects - 1) + ")");
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
      fail(std::size_t(i) + 1, "twin " + std::to_string(twin) + " is not another image of the " +
                                   std::to_string(count) + " in the file");
  }
  return scenes;
}

}  // namespace imram
