#include "imram/data/captions.h"

#include <fstream>
#include <iostream>

#include "imram/error.h"
#include "imram/util/log.h"

namespace imram {

namespace {
// Length of the valid UTF-8 sequence starting at text[i], or 0 when it is not one (overlong
// forms, surrogates and code points above U+10FFFF included).
std::size_t utf8_sequence_length(const std::string& text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  std::size_t length;
  unsigned char low = 0x80, high = 0xBF;  // the allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF)
    length = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) low = 0xA0;
    if (b0 == 0xED) high = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) low = 0x90;
    if (b0 == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  if (byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (std::size_t k = 2; k < length; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return length;
}
}  // namespace

std::string valid_utf8(const std::string& text, bool* replaced) {
  std::string out;
  out.reserve(text.size());
  bool any = false;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t length = utf8_sequence_length(text, i);
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      any = true;
      ++i;
    } else {
      out.append(text, i, length);
      i += length;
    }
  }
  if (replaced) *replaced = any;
  return out;
}

std::vector<std::string> read_captions(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open caption file");
  std::vector<std::string> captions;
  std::string line;
  std::size_t number = 0, first_invalid = 0, invalid_lines = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos)
      throw Error(path + ":" + std::to_string(number) + ": empty caption line");
    bool replaced = false;
    line = valid_utf8(line, &replaced);
    if (replaced && invalid_lines++ == 0) first_invalid = number;
    captions.push_back(std::move(line));
  }
  if (captions.empty()) throw Error(path + ": no captions in file");
  if (invalid_lines > 0)
    log_warning(path + ":" + std::to_string(first_invalid) + ": " + std::to_string(invalid_lines) +
                " caption line(s) are not valid UTF-8; their invalid bytes are read as U+FFFD");
  return captions;
}

}  // namespace imram
