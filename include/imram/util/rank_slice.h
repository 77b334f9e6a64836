#pragma once
// How a world of ranks shares a list of items: contiguous shares in rank order, the first
// items % size ranks one more (training's batches, evaluation's captions and queries).
#include <algorithm>
#include <cstdint>

namespace imram {

// The items [begin, begin + count) that rank `rank` of `size` owns.
struct Slice {
  std::int64_t begin = 0;
  std::int64_t count = 0;
};

inline Slice rank_slice(std::int64_t items, int rank, int size) {
  const auto base = items / size, extra = items % size;
  return {rank * base + std::min<std::int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

}  // namespace imram
