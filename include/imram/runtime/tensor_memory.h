#pragma once
// Keeping the memory of large freed tensors for the next ones, for hosts that cannot choose their
// allocator. The engine allocates and frees blocks of hundreds of MB per call; glibc's malloc
// maps each one afresh and unmaps it on free, so every call pays the page faults again. The
// command line links jemalloc told to keep freed pages (cli/allocator.cpp); a Python process has
// its interpreter's malloc, and jemalloc cannot be loaded into it later (its thread-local storage
// must exist at start-up), so the Python module installs this instead: LibTorch's CPU allocator,
// with freed blocks of 1 MB or more kept for reuse by an allocation of nearly their size.
#include <cstddef>

namespace imram {

// Installs the reusing allocator as LibTorch's CPU allocator (idempotent). `limit_bytes`: the
// most it keeps; a block freed beyond that goes back to the system.
void keep_freed_tensor_memory(std::size_t limit_bytes);

// Returns every kept block to the system; returns the bytes released (0 when not installed).
std::size_t release_kept_tensor_memory();

// Bytes kept now.
std::size_t kept_tensor_memory();

}  // namespace imram
