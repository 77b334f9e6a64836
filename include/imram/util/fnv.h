#pragma once
// FNV-1a, 64 bits: a fast, non-cryptographic hash. Its state is its value, so a hash continues
// over bytes appended later (the index store's checksums rely on that).
#include <cstddef>
#include <cstdint>
#include <string>

namespace imram {

inline constexpr std::uint64_t kFnv1aOffset = 0xcbf29ce484222325ull;

inline std::uint64_t fnv1a64(const void* data, std::size_t size, std::uint64_t hash = kFnv1aOffset) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
  return hash;
}

inline std::uint64_t fnv1a64(const std::string& text, std::uint64_t hash = kFnv1aOffset) {
  return fnv1a64(text.data(), text.size(), hash);
}

}  // namespace imram
