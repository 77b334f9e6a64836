// Picture headers read before decoding: the size a file declares (what the pixel limit judges)
// and whether a JPEG's data ends with its end marker.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "imram/error.h"
#include "imram/image/image_header.h"

namespace {

using Bytes = std::vector<unsigned char>;

imram::ImageHeader header_of(const Bytes& bytes) { return imram::read_image_header(bytes.data(), bytes.size()); }

std::string error_of(const Bytes& bytes) {
  try {
    header_of(bytes);
  } catch (const imram::Error& e) {
    return e.what();
  }
  return "";
}

Bytes png_header(std::uint32_t width, std::uint32_t height) {
  Bytes out{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (const auto value : {width, height})
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(value >> shift));
  out.insert(out.end(), {8, 2, 0, 0, 0, 0, 0, 0, 0});
  return out;
}

// SOI, an APP0 segment, a baseline SOF0 of width x height, then SOS, scan data, EOI.
Bytes jpeg_bytes(std::uint16_t width, std::uint16_t height) {
  Bytes out{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x06, 'J', 'F', 'I', 'F', 0xFF, 0xC0, 0x00, 0x0B, 8};
  out.insert(out.end(), {static_cast<unsigned char>(height >> 8), static_cast<unsigned char>(height),
                         static_cast<unsigned char>(width >> 8), static_cast<unsigned char>(width), 1, 1, 0x11, 0});
  out.insert(out.end(), {0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD9});
  return out;
}

TEST(ImageHeader, ReadsTheSizeOfEachFormat) {
  auto png = header_of(png_header(20000, 15000));
  EXPECT_EQ(png.format, imram::ImageFormat::Png);
  EXPECT_EQ(png.width, 20000);
  EXPECT_EQ(png.height, 15000);

  auto jpeg = header_of(jpeg_bytes(640, 480));
  EXPECT_EQ(jpeg.format, imram::ImageFormat::Jpeg);
  EXPECT_EQ(jpeg.width, 640);
  EXPECT_EQ(jpeg.height, 480);

  Bytes webp_lossless{'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'L', 0, 0, 0, 0, 0x2F};
  // width - 1 = 99 in 14 bits, height - 1 = 49 in the next 14
  const std::uint32_t bits = 99u | (49u << 14);
  for (int shift = 0; shift < 32; shift += 8) webp_lossless.push_back(static_cast<unsigned char>(bits >> shift));
  webp_lossless.resize(40, 0);
  auto webp = header_of(webp_lossless);
  EXPECT_EQ(webp.format, imram::ImageFormat::WebP);
  EXPECT_EQ(webp.width, 100);
  EXPECT_EQ(webp.height, 50);

  Bytes webp_extended{'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W',  'E',  'B', 'P',  'V', 'P', '8', 'X',
                      10,  0,   0,   0,   0, 0, 0, 0, 0xFF, 0x0F, 0,   0x07, 0,   0};  // 4096 x 8 (minus-one coded)
  webp_extended.resize(40, 0);
  auto extended = header_of(webp_extended);
  EXPECT_EQ(extended.width, 4096);
  EXPECT_EQ(extended.height, 8);

  Bytes bmp{'B', 'M', 0, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 0x20, 0, 0, 0, 0xF0, 0xFF, 0xFF, 0xFF};
  auto bitmap = header_of(bmp);  // 32 wide, -16 high (top-down rows)
  EXPECT_EQ(bitmap.format, imram::ImageFormat::Bmp);
  EXPECT_EQ(bitmap.width, 32);
  EXPECT_EQ(bitmap.height, 16);
}

TEST(ImageHeader, RefusesWhatIsNotAPictureOrDeclaresNothing) {
  const std::string text = "this is a text file named photo.jpg\n";
  EXPECT_EQ(error_of(Bytes(text.begin(), text.end())), "not a JPEG, PNG, WebP or BMP file");
  EXPECT_EQ(error_of({}), "not a JPEG, PNG, WebP or BMP file");
  EXPECT_NE(error_of(png_header(0, 10)).find("declares a 0x10 image"), std::string::npos);
  auto cut = png_header(10, 10);
  cut.resize(20);
  EXPECT_NE(error_of(cut).find("no IHDR"), std::string::npos);
  // A JPEG whose scan comes before any frame header, and one cut inside its first segment.
  Bytes scan_first{0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02};
  EXPECT_NE(error_of(scan_first).find("no frame"), std::string::npos);
  auto short_jpeg = jpeg_bytes(64, 64);
  short_jpeg.resize(8);
  EXPECT_NE(error_of(short_jpeg).find("ends before its frame"), std::string::npos);
  auto zero = jpeg_bytes(0, 64);
  EXPECT_NE(error_of(zero).find("declares a 0x64"), std::string::npos);
}

TEST(ImageHeader, AJpegIsCompleteOnlyWithItsEndMarkerAfterTheLastScan) {
  const auto whole = jpeg_bytes(8, 8);
  EXPECT_TRUE(imram::jpeg_is_complete(whole.data(), whole.size()));
  for (std::size_t cut = 1; cut <= 4; ++cut)
    EXPECT_FALSE(imram::jpeg_is_complete(whole.data(), whole.size() - cut)) << "cut " << cut;
  auto trailing = whole;
  trailing.insert(trailing.end(), {0, 0, 0});  // padding after the end marker is common, and harmless
  EXPECT_TRUE(imram::jpeg_is_complete(trailing.data(), trailing.size()));
  // An end marker before the last scan (an embedded thumbnail's) does not make a cut file whole.
  auto thumbnail_then_cut = Bytes{0xFF, 0xD9};
  thumbnail_then_cut.insert(thumbnail_then_cut.begin(), whole.begin(), whole.end() - 2);
  thumbnail_then_cut.insert(thumbnail_then_cut.end(), {0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0, 0x55});
  EXPECT_FALSE(imram::jpeg_is_complete(thumbnail_then_cut.data(), thumbnail_then_cut.size()));
}

}  // namespace
