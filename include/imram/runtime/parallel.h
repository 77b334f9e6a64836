#pragma once
// at::parallel_for with the caller's autograd state in every worker thread.
//
// LibTorch keeps grad mode per thread, and at::parallel_for (OpenMP) does not carry it across:
// a worker starts in the default mode, gradients on, whatever guard the caller holds. Work that
// a caller runs without gradients (the fused engine, writing products into existing tensors)
// then records them, or fails, on the workers only: on one thread, as the test suite ran, nothing
// shows. Every parallel loop over tensor work goes through this instead.
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>
#include <cstdint>

namespace imram {

template <typename Body>
void parallel_for_in_callers_mode(std::int64_t begin, std::int64_t end, std::int64_t grain_size, const Body& body) {
  // Where at::parallel_for would run the body on the calling thread anyway (nested in a parallel
  // region, one thread, one chunk), no state needs carrying: copying it costs allocations, and the
  // engine calls this per context item inside its parallel loop.
  if (end - begin <= std::max<std::int64_t>(grain_size, 1) || at::in_parallel_region() || at::get_num_threads() == 1) {
    if (begin < end) body(begin, end);
    return;
  }
  const at::ThreadLocalState callers_state;
  at::parallel_for(begin, end, grain_size, [&](std::int64_t chunk_begin, std::int64_t chunk_end) {
    const at::ThreadLocalStateGuard in_callers_state(callers_state);
    body(chunk_begin, chunk_end);
  });
}

}  // namespace imram
