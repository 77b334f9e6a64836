#include "arrays.h"

#include <torch/torch.h>

namespace imram::python {

namespace {

// What numpy would refuse with a long message, or convert silently when it should not: a torch
// tensor that is not a plain CPU array.
void refuse_unusable_tensor(const py::handle& object, const std::string& name) {
  if (!py::hasattr(object, "requires_grad") || !py::hasattr(object, "device")) return;
  if (object.attr("requires_grad").cast<bool>())
    throw py::value_error(name + ": the tensor requires grad; pass tensor.detach()");
  const auto device = py::str(object.attr("device")).cast<std::string>();
  if (device != "cpu") throw py::value_error(name + ": the tensor is on " + device + "; pass tensor.cpu()");
}

// `kinds`: the numpy dtype kinds accepted ('f' floats, 'i' and 'u' integers), `values` what they are.
py::array as_array(const py::handle& object, const std::string& name, int ndim, const std::string& kinds,
                   const std::string& values) {
  refuse_unusable_tensor(object, name);
  auto array = py::array::ensure(object);
  if (!array) throw py::value_error(name + ": expected an array, got " + std::string(py::str(py::type::of(object))));
  if (kinds.find(array.dtype().kind()) == std::string::npos)
    throw py::value_error(name + ": expected " + values + ", got dtype " + std::string(py::str(array.dtype())));
  if (array.ndim() != ndim)
    throw py::value_error(name + ": expected " + std::to_string(ndim) + " dimensions, got " +
                          std::to_string(array.ndim()));
  for (py::ssize_t axis = 0; axis < array.ndim(); ++axis)
    if (array.shape(axis) == 0)
      throw py::value_error(name + ": the array is empty (dimension " + std::to_string(axis) + " is 0)");
  return array;
}

std::vector<std::int64_t> shape_of(const py::array& array) {
  return std::vector<std::int64_t>(array.shape(), array.shape() + array.ndim());
}

}  // namespace

FloatInput float_input(const py::handle& object, const std::string& name, int ndim) {
  auto array = as_array(object, name, ndim, "f", "float32 or float16 values");
  auto floats = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(array);
  if (!floats) throw py::error_already_set();
  FloatInput input;
  input.tensor =
      torch::from_blob(const_cast<float*>(floats.data()), shape_of(floats), torch::kFloat32);  // never written
  input.keep = std::move(floats);
  return input;
}

IntInput int_input(const py::handle& object, const std::string& name, int ndim) {
  auto array = as_array(object, name, ndim, "iu", "integers");
  auto ints = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(array);
  if (!ints) throw py::error_already_set();
  IntInput input;
  input.data = ints.data();
  input.shape = shape_of(ints);
  input.keep = std::move(ints);
  return input;
}

py::array to_numpy(torch::Tensor tensor) {
  tensor = tensor.to(torch::kCPU).contiguous();
  py::dtype dtype;
  switch (tensor.scalar_type()) {
    case torch::kFloat32:
      dtype = py::dtype::of<float>();
      break;
    case torch::kFloat64:
      dtype = py::dtype::of<double>();
      break;
    case torch::kInt64:
      dtype = py::dtype::of<std::int64_t>();
      break;
    case torch::kBool:
      dtype = py::dtype::of<bool>();
      break;
    default:
      tensor = tensor.to(torch::kFloat32);
      dtype = py::dtype::of<float>();
  }
  std::vector<py::ssize_t> shape(tensor.sizes().begin(), tensor.sizes().end());
  std::vector<py::ssize_t> strides;
  for (const auto stride : tensor.strides()) strides.push_back(stride * py::ssize_t(tensor.element_size()));
  auto* owned = new torch::Tensor(tensor);
  py::capsule owner(owned, [](void* pointer) { delete static_cast<torch::Tensor*>(pointer); });
  return py::array(dtype, shape, strides, owned->data_ptr(), owner);
}

}  // namespace imram::python
