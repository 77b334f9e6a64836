#pragma once
// splitmix64 (Steele, Lea, Flood 2014): advances `state` and returns a well-mixed 64-bit value.
// Training's data order and the synthetic world's random streams both derive from it, so their
// sequences are the same on every platform and standard library.
#include <cstdint>

namespace imram {

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace imram
