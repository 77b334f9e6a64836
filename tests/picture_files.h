#pragma once
// Picture files made byte by byte for the tests, so that each odd or broken case is written out
// where it is used: PNGs of any colour type and depth (with a right or wrong checksum), JPEGs
// with an EXIF orientation or in CMYK, and headers that declare more pixels than they hold.
#include <zlib.h>

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <jpeglib.h>

namespace imram::test {

using Bytes = std::vector<unsigned char>;

inline void put_u32(Bytes& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(value >> shift));
}

inline void png_chunk(Bytes& out, const char* kind, const Bytes& data, bool good_crc = true) {
  put_u32(out, std::uint32_t(data.size()));
  Bytes body(kind, kind + 4);
  body.insert(body.end(), data.begin(), data.end());
  out.insert(out.end(), body.begin(), body.end());
  const auto crc = std::uint32_t(crc32(0, body.data(), uInt(body.size())));
  put_u32(out, good_crc ? crc : crc ^ 0xFFu);
}

// colour_type: 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA; depth 8 or 16; `samples` row-major, one
// value per channel (16-bit values big-endian as PNG stores them).
inline Bytes png_file(std::uint32_t width, std::uint32_t height, int colour_type, int depth,
                      const std::vector<std::uint16_t>& samples, bool good_crc = true) {
  const int channels = colour_type == 0 ? 1 : colour_type == 2 ? 3 : colour_type == 4 ? 2 : 4;
  Bytes raw;
  std::size_t at = 0;
  for (std::uint32_t y = 0; y < height; ++y) {
    raw.push_back(0);  // no filter
    for (std::uint32_t i = 0; i < width * std::uint32_t(channels); ++i, ++at) {
      const auto value = samples.empty() ? std::uint16_t(0) : samples[at % samples.size()];
      if (depth == 16) raw.push_back(static_cast<unsigned char>(value >> 8));
      raw.push_back(static_cast<unsigned char>(value));
    }
  }
  Bytes packed(compressBound(uLong(raw.size())));
  uLongf packed_size = uLongf(packed.size());
  compress(packed.data(), &packed_size, raw.data(), uLong(raw.size()));
  packed.resize(packed_size);
  Bytes out{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes header;
  put_u32(header, width);
  put_u32(header, height);
  header.insert(header.end(), {static_cast<unsigned char>(depth), static_cast<unsigned char>(colour_type), 0, 0, 0});
  png_chunk(out, "IHDR", header);
  png_chunk(out, "IDAT", packed, good_crc);
  png_chunk(out, "IEND", {});
  return out;
}

// A PNG whose header declares width x height but whose data is one row: a decompression bomb's
// shape without its size on disk.
inline Bytes png_declaring(std::uint32_t width, std::uint32_t height) {
  Bytes out{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes header;
  put_u32(header, width);
  put_u32(header, height);
  header.insert(header.end(), {8, 2, 0, 0, 0});
  png_chunk(out, "IHDR", header);
  png_chunk(out, "IDAT", Bytes{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01});
  png_chunk(out, "IEND", {});
  return out;
}

// A JPEG through libjpeg: components 3 (RGB in) or 4 (CMYK in, stored the Adobe way, as
// Photoshop writes it), `pixel(x, y, c)` giving each sample.
template <class Pixel>
Bytes jpeg_file(int width, int height, int components, Pixel pixel) {
  jpeg_compress_struct compress;
  jpeg_error_mgr errors;
  compress.err = jpeg_std_error(&errors);
  jpeg_create_compress(&compress);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&compress, &buffer, &size);
  compress.image_width = JDIMENSION(width);
  compress.image_height = JDIMENSION(height);
  compress.input_components = components;
  compress.in_color_space = components == 4 ? JCS_CMYK : JCS_RGB;
  jpeg_set_defaults(&compress);
  jpeg_set_quality(&compress, 95, TRUE);
  jpeg_start_compress(&compress, TRUE);
  std::vector<unsigned char> row(std::size_t(width * components));
  while (compress.next_scanline < compress.image_height) {
    const int y = int(compress.next_scanline);
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < components; ++c) row[std::size_t(x * components + c)] = pixel(x, y, c);
    JSAMPROW rows[1] = {row.data()};
    jpeg_write_scanlines(&compress, rows, 1);
  }
  jpeg_finish_compress(&compress);
  jpeg_destroy_compress(&compress);
  Bytes out(buffer, buffer + size);
  std::free(buffer);
  return out;
}

// The JPEG with an EXIF APP1 segment holding only an orientation tag (1-8) after its SOI.
inline Bytes with_exif_orientation(const Bytes& jpeg, std::uint16_t orientation) {
  const Bytes exif = {0xFF,
                      0xE1,
                      0x00,
                      34,
                      'E',
                      'x',
                      'i',
                      'f',
                      0,
                      0,  // APP1, length 34
                      'M',
                      'M',
                      0x00,
                      0x2A,
                      0,
                      0,
                      0,
                      8,  // TIFF, IFD at 8
                      0x00,
                      0x01,  // one entry
                      0x01,
                      0x12,
                      0x00,
                      0x03,
                      0,
                      0,
                      0,
                      1,  // orientation, SHORT x 1
                      static_cast<unsigned char>(orientation >> 8),
                      static_cast<unsigned char>(orientation),
                      0,
                      0,
                      0,
                      0,
                      0,
                      0};  // no next IFD
  Bytes out = jpeg;
  out.insert(out.begin() + 2, exif.begin(), exif.end());
  return out;
}

inline void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

}  // namespace imram::test
