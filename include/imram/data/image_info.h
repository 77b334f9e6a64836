#pragma once
// What a gallery knows about an image beyond its features, for people and for evaluation: a
// description shown beside results, a picture, the box of each region in it, and the image's
// "twin" (one that differs from it in a single detail, for fine-grained accuracy). Every field is
// optional. The synthetic world is one producer (data/scene.h); a folder of photos is another.
// One JSON object per line in `{split}_images.jsonl` and in an index's `gallery_images.jsonl`
// (docs/index.md). LibTorch-free.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace imram {

// [x, y, width, height] as fractions of the picture's width and height.
using Box = std::array<double, 4>;

// What says a picture file still holds what its features were computed from, without reading
// it: a file replaced by another (a new inode), rewritten in place (a new time) or cut (a new
// size) differs in one of them.
struct PictureStamp {
  std::uint64_t bytes = 0;
  std::int64_t modified_ns = 0;
  std::uint64_t inode = 0;
  bool operator==(const PictureStamp& other) const {
    return bytes == other.bytes && modified_ns == other.modified_ns && inode == other.inode;
  }
  bool operator!=(const PictureStamp& other) const { return !(*this == other); }
};
// nullopt when the file cannot be looked at (gone, no permission).
std::optional<PictureStamp> picture_stamp(const std::string& path);

struct ImageInfo {
  std::string description;                    // one line, e.g. "large red circle (top left)"
  std::int64_t twin = -1;                     // index of the twin image in the same gallery, -1: none
  std::string picture;                        // a picture file's path, or empty
  std::optional<PictureStamp> picture_stamp;  // the picture file as its features were computed
  std::string drawing;                        // an SVG document, for images drawn rather than taken
  std::vector<std::optional<Box>> regions;    // per region; nullopt: the region covers no object
  bool empty() const {
    return description.empty() && twin < 0 && picture.empty() && !picture_stamp && drawing.empty() && regions.empty();
  }
};

std::string image_info_json(const ImageInfo& info);  // one line, without its newline
// One line; `where` ("file:line") names it in errors. `images`: twins must index one of them.
ImageInfo parse_image_info(const std::string& line, const std::string& where, std::int64_t images);

// `{dir}/{split}_images.jsonl` when it exists (a relative picture path made absolute against
// `dir`), else the synthetic world's `{split}_scenes.jsonl` turned into ImageInfo, else nothing. Throws naming the file when it does not describe exactly
// `images` images.
std::vector<ImageInfo> dataset_image_info(const std::string& dir, const std::string& split, std::int64_t images);

}  // namespace imram
