#pragma once
// Arrays across the boundary: what Python passes in (numpy arrays, CPU torch tensors, anything
// numpy can view) as LibTorch tensors, and tensors back out as numpy arrays that own them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace imram::python {

namespace py = pybind11;

// A float input as a float32 tensor: a view of the caller's memory when it is already C-ordered
// float32, a float32 copy otherwise (float16, float64, F-ordered, strided). `keep` holds the
// memory the view reads; it must outlive the tensor's use. ValueError for what is not a real
// float array of `ndim` dimensions, for an empty one, and for a tensor that requires grad or
// lives on a GPU.
struct FloatInput {
  py::array keep;
  torch::Tensor tensor;
};
FloatInput float_input(const py::handle& object, const std::string& name, int ndim);

// Integers of `ndim` dimensions as int64 (a view when already C-ordered int64).
struct IntInput {
  py::array keep;
  const std::int64_t* data = nullptr;
  std::vector<std::int64_t> shape;
};
IntInput int_input(const py::handle& object, const std::string& name, int ndim);

// A CPU copy of `tensor` (float32, float64, int64 or bool) owned by the returned array: no copy
// when it is already a contiguous CPU tensor.
py::array to_numpy(torch::Tensor tensor);

}  // namespace imram::python
