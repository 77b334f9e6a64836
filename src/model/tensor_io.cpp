#include "imram/model/tensor_io.h"

#include "imram/error.h"

namespace imram {

namespace {
torch::ScalarType scalar_type_of(DType dtype) {
  switch (dtype) {
    case DType::Float32:
      return torch::kFloat32;
    case DType::Float64:
      return torch::kFloat64;
    case DType::Int32:
      return torch::kInt32;
    case DType::Int64:
      return torch::kInt64;
  }
  return torch::kFloat32;
}
}  // namespace

torch::Tensor tensor_view(const NpyArray& array) {
  if (array.fortran_order()) throw Error(array.path() + ": Fortran-order arrays cannot be viewed in place");
  auto keep_alive = array.keep_alive();
  return torch::from_blob(
      const_cast<void*>(array.data()), array.shape(), [keep_alive](void*) mutable { keep_alive.reset(); },
      torch::TensorOptions().dtype(scalar_type_of(array.dtype())));
}

void save_npy_tensor(const std::string& path, const torch::Tensor& tensor) {
  const auto cpu = tensor.detach().to(torch::kCPU).contiguous();
  DType dtype;
  switch (cpu.scalar_type()) {
    case torch::kFloat32:
      dtype = DType::Float32;
      break;
    case torch::kFloat64:
      dtype = DType::Float64;
      break;
    case torch::kInt32:
      dtype = DType::Int32;
      break;
    case torch::kInt64:
      dtype = DType::Int64;
      break;
    default:
      throw Error(path + ": cannot save tensors of type " + std::string(c10::toString(cpu.scalar_type())));
  }
  write_npy(path, dtype, cpu.sizes().vec(), cpu.data_ptr());
}

}  // namespace imram
