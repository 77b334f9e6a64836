#include "imram/data/image_info.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "imram/data/scene.h"
#include "imram/error.h"

namespace fs = std::filesystem;

namespace imram {

std::optional<PictureStamp> picture_stamp(const std::string& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) return std::nullopt;
  PictureStamp stamp;
  stamp.bytes = std::uint64_t(status.st_size);
  stamp.modified_ns = std::int64_t(status.st_mtim.tv_sec) * 1000000000 + status.st_mtim.tv_nsec;
  stamp.inode = std::uint64_t(status.st_ino);
  return stamp;
}

std::string image_info_json(const ImageInfo& info) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  if (!info.description.empty()) json["description"] = info.description;
  if (info.twin >= 0) json["twin"] = info.twin;
  if (!info.picture.empty()) json["picture"] = info.picture;
  if (info.picture_stamp)
    json["picture_stamp"] = {{"bytes", info.picture_stamp->bytes},
                             {"modified_ns", info.picture_stamp->modified_ns},
                             {"inode", info.picture_stamp->inode}};
  if (!info.drawing.empty()) json["drawing"] = info.drawing;
  if (!info.regions.empty()) {
    auto& regions = json["regions"] = nlohmann::ordered_json::array();
    for (const auto& box : info.regions)
      regions.push_back(box ? nlohmann::ordered_json(*box) : nlohmann::ordered_json());
  }
  return json.dump();
}

ImageInfo parse_image_info(const std::string& line, const std::string& where, std::int64_t images) {
  const auto fail = [&](const std::string& what) { throw Error(where + ": " + what); };
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception&) {
    fail("not valid JSON");
  }
  if (!json.is_object()) fail("expected a JSON object describing one image");
  ImageInfo info;
  const auto text = [&](const char* field, std::string& out) {
    if (!json.contains(field)) return;
    if (!json[field].is_string()) fail(std::string("\"") + field + "\" must be a string");
    out = json[field].get<std::string>();
  };
  text("description", info.description);
  text("picture", info.picture);
  text("drawing", info.drawing);
  if (json.contains("picture_stamp")) {
    const auto& stamp = json["picture_stamp"];
    // JSON reads a non-negative whole number as unsigned: one past int64's range cannot be a time.
    const auto whole = [&](const char* field, bool may_be_negative) {
      if (!stamp.is_object() || !stamp.contains(field) || !stamp[field].is_number_integer()) return false;
      if (stamp[field].is_number_unsigned())
        return !may_be_negative || stamp[field].get<std::uint64_t>() <= std::uint64_t(INT64_MAX);
      return may_be_negative || stamp[field].get<std::int64_t>() >= 0;
    };
    if (stamp.size() != 3 || !whole("bytes", false) || !whole("modified_ns", true) || !whole("inode", false))
      fail("\"picture_stamp\" must be {\"bytes\", \"modified_ns\", \"inode\"}, each a whole number");
    info.picture_stamp = PictureStamp{stamp["bytes"].get<std::uint64_t>(), stamp["modified_ns"].get<std::int64_t>(),
                                      stamp["inode"].get<std::uint64_t>()};
  }
  if (json.contains("twin")) {
    const auto& twin = json["twin"];
    if (!twin.is_number_integer() || twin.get<std::int64_t>() < 0 || twin.get<std::int64_t>() >= images)
      fail("\"twin\" must be the index of one of the " + std::to_string(images) + " images");
    info.twin = twin.get<std::int64_t>();
  }
  if (json.contains("regions")) {
    if (!json["regions"].is_array()) fail("\"regions\" must be an array of boxes or nulls");
    for (const auto& region : json["regions"]) {
      if (region.is_null()) {
        info.regions.push_back(std::nullopt);
        continue;
      }
      const bool four_numbers = region.is_array() && region.size() == 4 &&
                                std::all_of(region.begin(), region.end(), [](const auto& v) { return v.is_number(); });
      if (!four_numbers) fail("a region's box must be [x, y, width, height] (fractions of the picture) or null");
      Box box{};
      for (std::size_t k = 0; k < 4; ++k) box[k] = region[k].template get<double>();
      const bool inside =
          std::all_of(box.begin(), box.end(), [](double v) { return std::isfinite(v) && v >= -1 && v <= 2; });
      if (!inside || box[2] < 0 || box[3] < 0) fail("a region's box lies far outside its picture");
      info.regions.push_back(box);
    }
  }
  return info;
}

std::vector<ImageInfo> dataset_image_info(const std::string& dir, const std::string& split, std::int64_t images) {
  const auto own = (fs::path(dir) / (split + "_images.jsonl")).string();
  std::vector<ImageInfo> out;
  std::string source;
  if (fs::exists(own)) {
    source = own;
    std::ifstream in(own, std::ios::binary);
    if (!in) throw IoError(own + ": cannot open");
    std::string line;
    std::size_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      out.push_back(parse_image_info(line, own + ":" + std::to_string(number), images));
      // An index outlives the working directory it was built from: a picture's path is kept
      // absolute, a relative one read as relative to the dataset.
      auto& picture = out.back().picture;
      if (!picture.empty() && fs::path(picture).is_relative()) picture = (fs::absolute(dir) / picture).string();
    }
  } else if (fs::exists(scenes_path(dir, split))) {
    source = scenes_path(dir, split);
    for (const auto& scene : read_scenes(dir, split)) out.push_back(image_info(scene));
  } else {
    return out;
  }
  if (std::int64_t(out.size()) != images)
    throw Error(source + ": describes " + std::to_string(out.size()) + " images, the split has " +
                std::to_string(images));
  return out;
}

}  // namespace imram
