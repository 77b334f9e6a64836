#pragma once
// Process-wide runtime settings: the thread count (LibTorch defaults to one thread here) and
// the compute device, which is always a runtime choice, never compiled in.
#include <torch/types.h>

#include <string>

namespace imram {

// n <= 0 means all cores. Applies to LibTorch's intra-op pool and the OpenMP BLAS.
void set_thread_count(int n);
int thread_count();

// "cpu", "cuda" or "cuda:N"; throws imram::Error when CUDA is asked for but unavailable.
torch::Device parse_device(const std::string& name);

}  // namespace imram
