#include "imram/image/picture.h"

#include <jerror.h>
#include <jpeglib.h>
#include <zlib.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "imram/error.h"
#include "imram/image/image_header.h"
#include "imram/util/atomic_file.h"

namespace imram {

namespace {

int reduced_decoding_flag(const ImageHeader& header, int min_side) {
  if (header.format != ImageFormat::Jpeg || min_side <= 0) return cv::IMREAD_COLOR;
  const auto shorter = std::min(header.width, header.height);
  if (shorter >= 8 * std::int64_t(min_side)) return cv::IMREAD_REDUCED_COLOR_8;
  if (shorter >= 4 * std::int64_t(min_side)) return cv::IMREAD_REDUCED_COLOR_4;
  if (shorter >= 2 * std::int64_t(min_side)) return cv::IMREAD_REDUCED_COLOR_2;
  return cv::IMREAD_COLOR;
}

cv::Mat over_white(const cv::Mat& colour, const cv::Mat& alpha) {
  cv::Mat colour_f, alpha_f;
  colour.convertTo(colour_f, CV_32F);
  alpha.convertTo(alpha_f, CV_32F, 1.0 / 255);
  cv::Mat alpha3;
  cv::cvtColor(alpha_f, alpha3, cv::COLOR_GRAY2BGR);
  cv::Mat blended = colour_f.mul(alpha3) + (cv::Scalar::all(1.0) - alpha3) * 255.0;
  cv::Mat out;
  blended.convertTo(out, CV_8U);
  return out;
}

// Whatever the decoder gave (1-4 channels, 8 or 16 bits, BGR order) as 8-bit RGB.
cv::Mat to_rgb8(cv::Mat image) {
  if (image.depth() == CV_16U) {
    cv::Mat eight;
    image.convertTo(eight, CV_8U, 1.0 / 257);
    image = eight;
  } else if (image.depth() != CV_8U) {
    cv::Mat eight;
    image.convertTo(eight, CV_8U, 255);
    image = eight;
  }
  cv::Mat bgr;
  switch (image.channels()) {
    case 1:
      cv::cvtColor(image, bgr, cv::COLOR_GRAY2BGR);
      break;
    case 2: {
      std::vector<cv::Mat> planes;
      cv::split(image, planes);
      cv::Mat grey;
      cv::cvtColor(planes[0], grey, cv::COLOR_GRAY2BGR);
      bgr = over_white(grey, planes[1]);
      break;
    }
    case 3:
      bgr = image;
      break;
    case 4: {
      std::vector<cv::Mat> planes;
      cv::split(image, planes);
      cv::Mat colour;
      cv::merge(std::vector<cv::Mat>{planes[0], planes[1], planes[2]}, colour);
      bgr = over_white(colour, planes[3]);
      break;
    }
    default:
      throw Error("has " + std::to_string(image.channels()) + " channels");
  }
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

// libjpeg's first complaint about a JPEG: its warnings are data it could not read and filled in
// (a grey picture where the header promises more than the data holds), which OpenCV's decoder
// only prints. The callbacks record the first message; an error ends the check through longjmp,
// so nothing between setjmp and the end owns a destructor.
struct JpegComplaint {
  jpeg_error_mgr manager;
  std::jmp_buf escape;
  char message[JMSG_LENGTH_MAX];
  bool found;
};

void record_complaint(j_common_ptr info) {
  auto* complaint = reinterpret_cast<JpegComplaint*>(info->err);
  if (!complaint->found) (*info->err->format_message)(info, complaint->message);
  complaint->found = true;
}

[[noreturn]] void stop_on_error(j_common_ptr info) {
  record_complaint(info);
  std::longjmp(reinterpret_cast<JpegComplaint*>(info->err)->escape, 1);
}

void note_warning(j_common_ptr info, int level) {
  // Levels >= 0 are trace messages. Stray bytes before a marker lose no picture data (some
  // cameras write them): the one warning that is not damage.
  if (level < 0 && info->err->msg_code != JWRN_EXTRANEOUS_DATA) record_complaint(info);
}

// libpng prints its complaint about a damaged chunk on stderr by itself, before OpenCV sees the
// failure: the chunks' checksums are checked here first, so that a damaged or cut PNG is one
// skipped picture with its reason. Empty when the chunks are whole.
std::string png_damage(const unsigned char* data, std::size_t size) {
  const auto big_endian = [&](std::size_t at) {
    return std::uint32_t(data[at]) << 24 | std::uint32_t(data[at + 1]) << 16 | std::uint32_t(data[at + 2]) << 8 |
           std::uint32_t(data[at + 3]);
  };
  for (std::size_t at = 8; at + 12 <= size;) {
    const std::size_t length = big_endian(at);
    if (length > size - at - 12) return "cut short inside a chunk";
    const unsigned char* type = data + at + 4;
    const auto computed = crc32(crc32(0, Z_NULL, 0), type, uInt(length + 4));
    if (computed != big_endian(at + 8 + length))
      return "chunk " + std::string(reinterpret_cast<const char*>(type), 4) + " has a bad checksum";
    if (std::memcmp(type, "IEND", 4) == 0) return "";
    at += 12 + length;
  }
  return "cut short (no IEND chunk)";
}

// Every block entropy-decoded, at an eighth of the size: no full-size inverse DCT, colour
// conversion or image (one row of the reduced picture at a time). Empty when libjpeg has nothing
// to say. The state
// libjpeg changes lives on the heap: automatic objects changed between setjmp and longjmp would
// have indeterminate values after it.
std::string jpeg_complaint(const unsigned char* data, std::size_t size) {
  struct Check {
    JpegComplaint complaint;
    jpeg_decompress_struct info;
  };
  const auto check = std::make_unique<Check>();
  auto& complaint = check->complaint;
  auto& info = check->info;
  info.err = jpeg_std_error(&complaint.manager);
  complaint.manager.error_exit = stop_on_error;
  complaint.manager.emit_message = note_warning;
  if (setjmp(complaint.escape) == 0) {
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, static_cast<unsigned long>(size));
    jpeg_read_header(&info, TRUE);
    info.scale_num = 1;
    info.scale_denom = 8;
    info.dct_method = JDCT_IFAST;
    info.do_fancy_upsampling = FALSE;
    jpeg_start_decompress(&info);
    JSAMPARRAY row = (*info.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&info), JPOOL_IMAGE,
                                               info.output_width * JDIMENSION(info.output_components), 1);
    while (!complaint.found && info.output_scanline < info.output_height) jpeg_read_scanlines(&info, row, 1);
    if (!complaint.found) jpeg_finish_decompress(&info);
  }
  jpeg_destroy_decompress(&info);
  return complaint.found ? complaint.message : "";
}

}  // namespace

cv::Mat decode_picture(const unsigned char* data, std::size_t size, const std::string& name,
                       const PictureLimits& limits, int min_side) {
  ImageHeader header;
  try {
    header = read_image_header(data, size);
  } catch (const Error& e) {
    throw Error(name + ": " + e.what());
  }
  const auto dimensions = std::to_string(header.width) + "x" + std::to_string(header.height);
  if (header.width * header.height > limits.max_pixels)
    throw Error(name + ": " + dimensions + " pixels is over the limit of " + std::to_string(limits.max_pixels) +
                " (--max-pixels)");
  if (header.format == ImageFormat::Jpeg && !jpeg_is_complete(data, size))
    throw Error(name + ": truncated JPEG (its image data has no end marker)");
  if (header.format == ImageFormat::Jpeg)
    if (const auto complaint = jpeg_complaint(data, size); !complaint.empty())
      throw Error(name + ": damaged JPEG (" + complaint + ")");
  if (header.format == ImageFormat::Png)
    if (const auto damage = png_damage(data, size); !damage.empty())
      throw Error(name + ": damaged PNG (" + damage + ")");
  // Pictures with transparency keep their alpha channel, to be put over white rather than
  // dropped (a transparent pixel's colour is often black). JPEGs have none but carry the EXIF
  // orientation, which OpenCV applies to every mode except "unchanged".
  const int flags = header.format == ImageFormat::Jpeg ? reduced_decoding_flag(header, min_side) : cv::IMREAD_UNCHANGED;
  cv::Mat decoded;
  try {
    decoded = cv::imdecode(cv::Mat(1, int(size), CV_8U, const_cast<unsigned char*>(data)), flags);
  } catch (const cv::Exception&) {
    decoded.release();
  }
  if (decoded.empty())
    throw Error(name + ": cannot decode this " + image_format_name(header.format) + " " + dimensions +
                " picture (damaged or an unsupported variant)");
  try {
    return to_rgb8(decoded);
  } catch (const Error& e) {
    throw Error(name + ": " + e.what());
  }
}

cv::Mat read_picture(const std::string& path, const PictureLimits& limits, int min_side) {
  const auto file = read_picture_file(path, limits.max_file_bytes);
  return decode_picture(reinterpret_cast<const unsigned char*>(file.bytes.data()), file.bytes.size(), path, limits,
                        min_side);
}

cv::Mat resize_picture(const cv::Mat& rgb, int width, int height) {
  if (rgb.cols == width && rgb.rows == height) return rgb;
  const bool shrinking = width <= rgb.cols && height <= rgb.rows;
  cv::Mat out;
  cv::resize(rgb, out, cv::Size(width, height), 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

cv::Mat fit_picture(const cv::Mat& rgb, int max_side) {
  const int longer = std::max(rgb.cols, rgb.rows);
  if (longer <= max_side) return rgb;
  const double scale = double(max_side) / longer;
  return resize_picture(rgb, std::max(1, int(rgb.cols * scale + 0.5)), std::max(1, int(rgb.rows * scale + 0.5)));
}

std::vector<unsigned char> encode_jpeg(const cv::Mat& rgb, int quality) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<unsigned char> bytes;
  if (!cv::imencode(".jpg", bgr, bytes, {cv::IMWRITE_JPEG_QUALITY, quality}))
    throw IoError("cannot encode a JPEG picture");
  return bytes;
}

void write_picture(const std::string& path, const cv::Mat& rgb) {
  const auto dot = path.rfind('.');
  const std::string extension = dot == std::string::npos ? "" : path.substr(dot);
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<unsigned char> bytes;
  bool encoded = false;
  try {
    encoded = cv::imencode(extension, bgr, bytes);
  } catch (const cv::Exception&) {
  }
  if (!encoded)
    throw Error(path + ": cannot write a picture with the extension '" + extension + "' (use .png or .jpg)");
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  });
}

}  // namespace imram
