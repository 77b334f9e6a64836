#pragma once
// A whole (small) .npy file as a fresh CPU tensor of its dtype, for comparing with the fixtures
// the authors' code wrote; Fortran order (numpy's transposes) is accepted and made C order.
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "imram/data/npy.h"
#include "imram/model/tensor_io.h"

namespace imram::test {

inline torch::Tensor load_npy_tensor(const std::string& path) {
  const auto array = NpyArray::open(path, /*allow_fortran_order=*/true);
  if (!array.fortran_order()) return tensor_view(array).clone();
  const auto dtype = array.dtype() == DType::Float32   ? torch::kFloat32
                     : array.dtype() == DType::Float64 ? torch::kFloat64
                     : array.dtype() == DType::Int32   ? torch::kInt32
                                                       : torch::kInt64;
  // Column-major data is the row-major data of the reversed shape, transposed back.
  auto reversed = array.shape();
  std::reverse(reversed.begin(), reversed.end());
  std::vector<std::int64_t> axes(reversed.size());
  for (std::size_t i = 0; i < axes.size(); ++i) axes[i] = std::int64_t(axes.size() - 1 - i);
  return torch::from_blob(const_cast<void*>(array.data()), reversed, torch::TensorOptions().dtype(dtype))
      .permute(axes)
      .contiguous();
}

}  // namespace imram::test
