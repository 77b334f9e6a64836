#include "imram/runtime/runtime.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <thread>

#include "imram/error.h"

namespace imram {

void set_thread_count(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
}

int thread_count() { return torch::get_num_threads(); }

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("--device " + name +
                  ": CUDA is not available (this LibTorch build has no CUDA "
                  "support or no GPU is visible)");
    try {
      torch::Device device(name);
      if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count()))
        throw Error("--device " + name + ": only " + std::to_string(torch::cuda::device_count()) +
                    " CUDA device(s) visible");
      // TensorFloat-32 rounds products to 10-bit mantissas: cuDNN's GRU then misses the authors'
      // caption embeddings by 4e-5. IMRAM's numbers are exact here, so full float32 it is.
      at::globalContext().setAllowTF32CuDNN(false);
      at::globalContext().setAllowTF32CuBLAS(false);
      return device;
    } catch (const c10::Error&) {
      throw Error("--device " + name + ": not a device name (use cpu, cuda or cuda:N)");
    }
  }
  throw Error("--device " + name + ": unknown device (use cpu, cuda or cuda:N)");
}

}  // namespace imram
