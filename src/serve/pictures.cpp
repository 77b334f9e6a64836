#include "imram/serve/pictures.h"

#include <cmath>
#include <sstream>

namespace imram {

namespace {

constexpr double kCell = kPictureSize / kSyntheticGrid;
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
  return {cx - r, cy - r, 2 * r, 2 * r};
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

}  // namespace

std::string scene_svg(const Scene& scene) {
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << kPictureSize << " " << kPictureSize
      << "\" width=\"" << kPictureSize << "\" height=\"" << kPictureSize << "\" role=\"img\">"
      << "<title>" << escape(describe(scene)) << "</title>"
      << "<rect width=\"100%\" height=\"100%\" fill=\"#f4f1ea\"/>";
  for (int i = 1; i < kSyntheticGrid; ++i)
    out << "<path d=\"M " << i * kCell << " 0 V " << kPictureSize << " M 0 " << i * kCell << " H " << kPictureSize
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

std::vector<std::optional<Box>> region_boxes(const Scene& scene) {
  std::vector<std::optional<Box>> boxes;
  for (const int object : scene.region_objects)
    boxes.push_back(object < 0 ? std::nullopt : std::optional<Box>(object_box(scene.objects[std::size_t(object)])));
  return boxes;
}

std::string placeholder_svg(const std::string& message) {
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << kPictureSize << " " << kPictureSize
      << "\" width=\"" << kPictureSize << "\" height=\"" << kPictureSize << "\" role=\"img\">"
      << "<rect width=\"100%\" height=\"100%\" fill=\"#eeeeee\"/>"
      << "<text x=\"50%\" y=\"50%\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"14\" fill=\"#555\">"
      << escape(message) << "</text></svg>";
  return out.str();
}

}  // namespace imram
