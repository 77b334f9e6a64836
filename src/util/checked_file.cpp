#include "imram/util/checked_file.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "imram/util/atomic_file.h"

namespace imram {

namespace {
constexpr char kMagic[8] = {'I', 'M', 'R', 'A', 'M', 'C', 'K', '1'};
constexpr std::size_t kHeaderSize = sizeof kMagic + 2 * sizeof(std::uint64_t);

void put_u64(std::string& out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

std::uint64_t get_u64(const char* bytes) {
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= std::uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  return value;
}
}  // namespace

std::uint64_t checksum64(const std::string& bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ull ^ bytes.size();
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    hash = (hash ^ word) * 0x100000001b3ull;
    hash ^= hash >> 29;
  }
  for (; i < bytes.size(); ++i) hash = (hash ^ static_cast<unsigned char>(bytes[i])) * 0x100000001b3ull;
  return hash;
}

void write_checked_file(const std::string& path, const std::string& payload) {
  std::string header(kMagic, sizeof kMagic);
  put_u64(header, payload.size());
  put_u64(header, checksum64(payload));
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
  });
}

std::optional<std::string> read_checked_file(const std::string& path, std::string* problem) {
  const auto fail = [&](const std::string& what) -> std::optional<std::string> {
    if (problem) *problem = what;
    return std::nullopt;
  };
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return fail("");
  std::ifstream in(path, std::ios::binary);
  char header[kHeaderSize];
  if (!in || size < kHeaderSize || !in.read(header, kHeaderSize) ||
      std::memcmp(header, kMagic, sizeof kMagic) != 0)
    return fail("not a checked file");
  const std::uint64_t length = get_u64(header + sizeof kMagic);
  if (length != size - kHeaderSize) return fail("length does not match its header (truncated?)");
  std::string payload(length, '\0');
  if (!in.read(payload.data(), static_cast<std::streamsize>(length))) return fail("cannot read it");
  if (checksum64(payload) != get_u64(header + sizeof kMagic + 8)) return fail("checksum mismatch (corrupt)");
  return payload;
}

}  // namespace imram
