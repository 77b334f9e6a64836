// jemalloc reads this configuration at start-up: never give freed pages back to the kernel, so
// that the large per-block tensors of the engine reuse warm memory instead of page-faulting. And
// let a freed extent serve a request of any smaller size (jemalloc's default: at least 1/64 of
// its size): without it, encoding captions (blocks of every padded length) grew the heap with
// the words written, without bound (0.83 GB in 45 s of a 100,000-caption build at d = 1,024),
// and with it the heap stayed flat at the same speed; most likely the freed extents, never
// purged, coalesced into ones too large for the smaller requests
// (docs/search.md#image-queries-among-500000-captions).

#ifdef IMRAM_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>

#include <string>
#include <vector>

extern "C" {
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1,lg_extent_max_active_fit:20";
}
#endif

namespace imram::cli {

void return_freed_memory_after(double seconds) {
#ifdef IMRAM_WITH_JEMALLOC
  ssize_t decay_ms = seconds < 0 ? -1 : ssize_t(seconds * 1000);
  std::vector<std::string> keys{"arenas.dirty_decay_ms", "arenas.muzzy_decay_ms"};  // arenas made later
  unsigned arenas = 0;
  std::size_t size = sizeof arenas;
  if (mallctl("arenas.narenas", &arenas, &size, nullptr, 0) == 0)
    for (unsigned arena = 0; arena < arenas; ++arena)
      for (const char* kind : {".dirty_decay_ms", ".muzzy_decay_ms"})
        keys.push_back("arena." + std::to_string(arena) + kind);
  for (const auto& key : keys) mallctl(key.c_str(), nullptr, nullptr, &decay_ms, sizeof decay_ms);
#else
  (void)seconds;
#endif
}

}  // namespace imram::cli
