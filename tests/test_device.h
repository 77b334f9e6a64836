#pragma once
// The device the model-level tests run on: IMRAM_TEST_DEVICE (cpu, cuda, cuda:N), default cpu,
// so that the same parity and oracle tests check a CUDA build (scripts/gpu_check.sh).
#include <torch/torch.h>

#include <cstdlib>
#include <string>

#include "imram/runtime/runtime.h"

namespace imram::test {

// Through parse_device, so that the tests run with the settings the command line applies.
inline torch::Device test_device() {
  const char* name = std::getenv("IMRAM_TEST_DEVICE");
  return imram::parse_device(name && *name ? std::string(name) : std::string("cpu"));
}

}  // namespace imram::test
