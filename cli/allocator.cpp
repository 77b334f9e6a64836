// jemalloc reads this configuration at start-up: never give freed pages back to the kernel, so
// that the large per-block tensors of the engine reuse warm memory instead of page-faulting.
#ifdef IMRAM_WITH_JEMALLOC
extern "C" {
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";
}
#endif
