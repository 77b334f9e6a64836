#include "imram/image/image_header.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "imram/error.h"

namespace imram {

namespace {

std::uint32_t big_endian(const unsigned char* p, int bytes) {
  std::uint32_t value = 0;
  for (int i = 0; i < bytes; ++i) value = value << 8 | p[i];
  return value;
}

std::uint32_t little_endian(const unsigned char* p, int bytes) {
  std::uint32_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = value << 8 | p[i];
  return value;
}

bool starts_with(const unsigned char* data, std::size_t size, const char* magic, std::size_t offset = 0) {
  const auto length = std::strlen(magic);
  return size >= offset + length && std::memcmp(data + offset, magic, length) == 0;
}

[[noreturn]] void malformed(const char* format, const std::string& what) {
  throw Error(std::string(format) + " header " + what);
}

ImageHeader jpeg_header(const unsigned char* data, std::size_t size) {
  std::size_t at = 2;  // after the start-of-image marker
  while (at + 1 < size) {
    if (data[at] != 0xFF) malformed("JPEG", "is damaged (a segment does not start with a marker)");
    while (at < size && data[at] == 0xFF) ++at;  // fill bytes
    if (at >= size) break;
    const unsigned marker = data[at++];
    // Markers without a length: restart markers, TEM and a stray start-of-image.
    if ((marker >= 0xD0 && marker <= 0xD8) || marker == 0x01) continue;
    if (at + 2 > size) break;
    const std::size_t length = big_endian(data + at, 2);
    if (length < 2) malformed("JPEG", "is damaged (a segment shorter than its length field)");
    const bool start_of_frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (start_of_frame) {
      if (at + 7 > size) break;
      ImageHeader header{ImageFormat::Jpeg, big_endian(data + at + 5, 2), big_endian(data + at + 3, 2)};
      if (header.width == 0 || header.height == 0)
        malformed("JPEG",
                  "declares a " + std::to_string(header.width) + "x" + std::to_string(header.height) + " image");
      return header;
    }
    if (marker == 0xDA || marker == 0xD9) malformed("JPEG", "has no frame before its image data");
    at += length;
  }
  malformed("JPEG", "ends before its frame header");
}

ImageHeader png_header(const unsigned char* data, std::size_t size) {
  if (size < 24 || !starts_with(data, size, "IHDR", 12)) malformed("PNG", "has no IHDR chunk first");
  ImageHeader header{ImageFormat::Png, big_endian(data + 16, 4), big_endian(data + 20, 4)};
  // The PNG format caps each side at 2^31 - 1.
  if (header.width == 0 || header.height == 0 || header.width > 0x7FFFFFFF || header.height > 0x7FFFFFFF)
    malformed("PNG", "declares a " + std::to_string(header.width) + "x" + std::to_string(header.height) + " image");
  return header;
}

ImageHeader webp_header(const unsigned char* data, std::size_t size) {
  if (size < 30) malformed("WebP", "ends before its image header");
  ImageHeader header{ImageFormat::WebP, 0, 0};
  const unsigned char* chunk = data + 20;
  if (starts_with(data, size, "VP8X", 12)) {
    header.width = std::int64_t(little_endian(chunk + 4, 3)) + 1;
    header.height = std::int64_t(little_endian(chunk + 7, 3)) + 1;
  } else if (starts_with(data, size, "VP8L", 12)) {
    if (chunk[0] != 0x2F) malformed("WebP", "has a lossless chunk without its signature");
    const auto bits = little_endian(chunk + 1, 4);
    header.width = std::int64_t(bits & 0x3FFF) + 1;
    header.height = std::int64_t((bits >> 14) & 0x3FFF) + 1;
  } else if (starts_with(data, size, "VP8 ", 12)) {
    if (chunk[3] != 0x9D || chunk[4] != 0x01 || chunk[5] != 0x2A)
      malformed("WebP", "has a lossy chunk without its start code");
    header.width = little_endian(chunk + 6, 2) & 0x3FFF;
    header.height = little_endian(chunk + 8, 2) & 0x3FFF;
    if (header.width == 0 || header.height == 0) malformed("WebP", "declares an empty image");
  } else {
    malformed("WebP", "has no VP8, VP8L or VP8X chunk first");
  }
  return header;
}

ImageHeader bmp_header(const unsigned char* data, std::size_t size) {
  if (size < 26) malformed("BMP", "ends before its image header");
  const auto info_size = little_endian(data + 14, 4);
  ImageHeader header{ImageFormat::Bmp, 0, 0};
  if (info_size == 12) {  // the OS/2 core header: 16-bit unsigned sides
    header.width = little_endian(data + 18, 2);
    header.height = little_endian(data + 20, 2);
  } else if (info_size >= 40) {
    header.width = std::int32_t(little_endian(data + 18, 4));
    header.height = std::int32_t(little_endian(data + 22, 4));
    if (header.height < 0) header.height = -header.height;  // top-down rows
  } else {
    malformed("BMP", "has an unknown info header of " + std::to_string(info_size) + " bytes");
  }
  if (header.width <= 0 || header.height <= 0)
    malformed("BMP", "declares a " + std::to_string(header.width) + "x" + std::to_string(header.height) + " image");
  return header;
}

}  // namespace

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::Jpeg:
      return "JPEG";
    case ImageFormat::Png:
      return "PNG";
    case ImageFormat::WebP:
      return "WebP";
    case ImageFormat::Bmp:
      return "BMP";
  }
  return "image";
}

std::optional<ImageFormat> image_format_of(const unsigned char* data, std::size_t size) {
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return ImageFormat::Jpeg;
  if (starts_with(data, size, "\x89PNG\r\n\x1a\n")) return ImageFormat::Png;
  if (starts_with(data, size, "RIFF") && starts_with(data, size, "WEBP", 8)) return ImageFormat::WebP;
  if (starts_with(data, size, "BM")) return ImageFormat::Bmp;
  return std::nullopt;
}

const char* image_media_type(ImageFormat format) {
  switch (format) {
    case ImageFormat::Jpeg:
      return "image/jpeg";
    case ImageFormat::Png:
      return "image/png";
    case ImageFormat::WebP:
      return "image/webp";
    case ImageFormat::Bmp:
      return "image/bmp";
  }
  return "application/octet-stream";
}

ImageHeader read_image_header(const unsigned char* data, std::size_t size) {
  const auto format = image_format_of(data, size);
  if (!format) throw Error("not a JPEG, PNG, WebP or BMP file");
  switch (*format) {
    case ImageFormat::Jpeg:
      return jpeg_header(data, size);
    case ImageFormat::Png:
      return png_header(data, size);
    case ImageFormat::WebP:
      return webp_header(data, size);
    case ImageFormat::Bmp:
      return bmp_header(data, size);
  }
  throw Error("not a JPEG, PNG, WebP or BMP file");
}

bool jpeg_is_complete(const unsigned char* data, std::size_t size) {
  // Inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so the
  // last start-of-scan marker in the file is the last scan's, and its end is the first EOI after it.
  std::size_t last_scan = size;
  for (std::size_t at = size; at-- > 1;) {
    if (data[at - 1] == 0xFF && data[at] == 0xDA) {
      last_scan = at;
      break;
    }
  }
  if (last_scan == size) return false;
  for (std::size_t at = last_scan + 1; at + 1 < size; ++at)
    if (data[at] == 0xFF && data[at + 1] == 0xD9) return true;
  return false;
}

namespace {

// The file's bytes (the first 16 when `whole` is false), after every check.
PictureFile open_picture_file(const std::string& path, std::int64_t max_bytes, bool whole) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw Error(path + ": cannot read (" + std::strerror(errno) + ")");
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  if (st.st_size > max_bytes)
    throw Error(path + ": " + std::to_string(st.st_size) + " bytes is over the limit of " + std::to_string(max_bytes) +
                " for a picture file");
  const auto read_up_to = [&](std::string& bytes, std::size_t size) {
    std::size_t done = bytes.size();
    bytes.resize(size);
    while (done < size) {
      const auto got = ::read(fd, bytes.data() + done, size - done);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) throw Error(path + ": cannot read (" + std::strerror(errno) + ")");
      if (got == 0) break;  // shorter than it was a moment ago
      done += std::size_t(got);
    }
    bytes.resize(done);
  };
  std::string bytes;
  read_up_to(bytes, std::min<std::size_t>(16, std::size_t(st.st_size)));
  const auto format = image_format_of(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  if (!format) throw Error(path + ": not a JPEG, PNG, WebP or BMP file");
  if (whole) read_up_to(bytes, std::size_t(st.st_size));
  return {std::move(bytes), image_media_type(*format)};
}

}  // namespace

void check_picture_file(const std::string& path, std::int64_t max_bytes) { open_picture_file(path, max_bytes, false); }

PictureFile read_picture_file(const std::string& path, std::int64_t max_bytes) {
  return open_picture_file(path, max_bytes, true);
}

}  // namespace imram
