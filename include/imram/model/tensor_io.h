#pragma once
// .npy <-> tensors. Loading maps the file; the tensor owns its own copy unless noted.
#include <torch/types.h>

#include <string>

#include "imram/data/npy.h"

namespace imram {

// A CPU tensor viewing the mapped data without copying; it keeps the mapping alive.
torch::Tensor tensor_view(const NpyArray& array);
// Saves a tensor of float32/float64/int32/int64 (any device) atomically.
void save_npy_tensor(const std::string& path, const torch::Tensor& tensor);

}  // namespace imram
