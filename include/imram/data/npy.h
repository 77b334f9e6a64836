#pragma once
// NumPy .npy files: the format users' features, caption ids and score matrices come in.
// Reading memory-maps the file (a 33 GB feature file opens instantly and costs only the
// pages touched); writing is atomic. Little-endian, C order, format versions 1.0 to 3.0.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace imram {

enum class DType { Float32, Float64, Int32, Int64 };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // numpy spelling: "float32", ...

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::Float32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::Float64;
}
template <>
constexpr DType dtype_of<std::int32_t>() {
  return DType::Int32;
}
template <>
constexpr DType dtype_of<std::int64_t>() {
  return DType::Int64;
}

// A read-only, memory-mapped .npy array. Copies share the mapping.
class NpyArray {
 public:
  // Fortran-order files are an error unless allow_fortran_order: a memory-mapped C-order view is
  // what the loaders need, and a silent transpose would hide a wrong export.
  static NpyArray open(const std::string& path, bool allow_fortran_order = false);

  const std::string& path() const { return path_; }
  DType dtype() const { return dtype_; }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  std::int64_t dim(std::size_t axis) const { return shape_.at(axis); }
  std::int64_t numel() const;
  const void* data() const { return data_; }
  bool fortran_order() const { return fortran_order_; }

  // Typed view of the data; throws when the file holds another dtype.
  template <class T>
  const T* as() const {
    require_dtype(dtype_of<T>());
    return static_cast<const T*>(data_);
  }
  // Throws "<path>: expected N dimensions, got shape (...)" unless the array has n dimensions.
  void require_ndim(std::size_t n) const;
  void require_dtype(DType dtype) const;
  std::string shape_string() const;
  // The mapping stays alive as long as this handle (or a copy) does.
  std::shared_ptr<const void> keep_alive() const { return mapping_; }

 private:
  std::string path_;
  DType dtype_ = DType::Float32;
  std::vector<std::int64_t> shape_;
  const void* data_ = nullptr;
  bool fortran_order_ = false;
  std::shared_ptr<const void> mapping_;
};

// Writes an array atomically (temporary file + rename). `data` holds prod(shape) elements.
void write_npy(const std::string& path, DType dtype, const std::vector<std::int64_t>& shape, const void* data);

template <class T>
void write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const std::vector<T>& values) {
  write_npy(path, dtype_of<T>(), shape, values.data());
}

// Copies a whole array into a vector, converting integer/float types as needed.
std::vector<double> to_double(const NpyArray& array);
// Integer arrays only: float ids are an error naming the file.
std::vector<std::int64_t> to_int64(const NpyArray& array);

// Streams an array to disk without holding it in memory: the header first, then the elements in
// C order over any number of write() calls. The file appears at `path` only when finish() has
// checked that every element came; a writer destroyed before that leaves nothing behind.
class NpyWriter {
 public:
  NpyWriter(const std::string& path, DType dtype, const std::vector<std::int64_t>& shape);
  ~NpyWriter();
  NpyWriter(const NpyWriter&) = delete;
  NpyWriter& operator=(const NpyWriter&) = delete;

  void write(const void* data, std::size_t elements);
  template <class T>
  void write(const T* values, std::size_t count) {
    require_dtype(dtype_of<T>());
    write(static_cast<const void*>(values), count);
  }
  void finish();

 private:
  void require_dtype(DType dtype) const;
  void write_raw(const void* bytes, std::size_t size);
  void discard();

  std::string path_;
  std::string tmp_;
  DType dtype_;
  std::size_t expected_ = 0;
  std::size_t written_ = 0;
  int fd_ = -1;  // unbuffered: callers write large blocks
};

}  // namespace imram
