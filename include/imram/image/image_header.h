#pragma once
// An image file's format and size read from its first bytes, before any decoder runs: a
// decompression bomb (a small file that declares billions of pixels) is refused by its header,
// not by running out of memory. LibTorch- and OpenCV-free, so that it is fuzzed with the parsers.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace imram {

enum class ImageFormat { Jpeg, Png, WebP, Bmp };

// The largest picture file read whole (features, thumbnails, the server's pictures).
inline constexpr std::int64_t kMaxPictureFileBytes = std::int64_t(512) << 20;

const char* image_format_name(ImageFormat format);  // "JPEG", "PNG", ...

struct ImageHeader {
  ImageFormat format = ImageFormat::Jpeg;
  std::int64_t width = 0;
  std::int64_t height = 0;
};

// The format its first bytes (at least 12) name, or none.
std::optional<ImageFormat> image_format_of(const unsigned char* data, std::size_t size);

// The format's media type, e.g. "image/jpeg".
const char* image_media_type(ImageFormat format);

// Throws imram::Error with a phrase (no file name: the caller adds it), e.g. "not a JPEG, PNG,
// WebP or BMP file" or "PNG header declares a 0x10 image".
ImageHeader read_image_header(const unsigned char* data, std::size_t size);

// A picture file's bytes and media type.
struct PictureFile {
  std::string bytes;
  std::string media_type;
};

// Reads `path` as a picture file: a regular file (a FIFO or a device would block or never end),
// opened without blocking, of at most `max_bytes`, whose first bytes name a JPEG, PNG, WebP or BMP
// (checked before the rest is read: a large file of anything else costs 16 bytes). Throws
// imram::Error naming the path and the problem. `check_picture_file` stops after the 16 bytes.
PictureFile read_picture_file(const std::string& path, std::int64_t max_bytes);
void check_picture_file(const std::string& path, std::int64_t max_bytes);

// Whether a JPEG's last scan is followed by the end-of-image marker. libjpeg decodes a truncated
// file "successfully", painting the missing rows grey; such pictures must be skipped, not used.
bool jpeg_is_complete(const unsigned char* data, std::size_t size);

}  // namespace imram
