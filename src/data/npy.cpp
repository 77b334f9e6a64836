#include "imram/data/npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>

#include "imram/error.h"
#include "imram/util/atomic_file.h"

namespace imram {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::Float32:
      return 4;
    case DType::Float64:
      return 8;
    case DType::Int32:
      return 4;
    case DType::Int64:
      return 8;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32:
      return "float32";
    case DType::Float64:
      return "float64";
    case DType::Int32:
      return "int32";
    case DType::Int64:
      return "int64";
  }
  return "?";
}

namespace {

const char* descr_of(DType dtype) {
  switch (dtype) {
    case DType::Float32:
      return "<f4";
    case DType::Float64:
      return "<f8";
    case DType::Int32:
      return "<i4";
    case DType::Int64:
      return "<i8";
  }
  return "";
}

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicSize = 6;

struct Header {
  bool fortran_order;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::size_t data_offset;
};

// Finds the value text that follows 'key': in the header dictionary.
std::string dict_value(const std::string& dict, const std::string& key, const std::string& path) {
  for (const char quote : {'\'', '"'}) {
    const std::string needle = std::string(1, quote) + key + std::string(1, quote);
    const auto at = dict.find(needle);
    if (at == std::string::npos) continue;
    auto colon = dict.find(':', at + needle.size());
    if (colon == std::string::npos) break;
    auto start = dict.find_first_not_of(" \t", colon + 1);
    if (start == std::string::npos) break;
    std::size_t end;
    if (dict[start] == '(') {
      end = dict.find(')', start);
      if (end == std::string::npos) break;
      return dict.substr(start, end - start + 1);
    }
    if (dict[start] == '\'' || dict[start] == '"') {
      end = dict.find(dict[start], start + 1);
      if (end == std::string::npos) break;
      return dict.substr(start + 1, end - start - 1);
    }
    end = dict.find_first_of(",}", start);
    if (end == std::string::npos) break;
    auto value = dict.substr(start, end - start);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    return value;
  }
  throw Error(path + ": malformed .npy header (no '" + key + "' entry)");
}

DType parse_descr(const std::string& descr, const std::string& path) {
  if (descr == "<f4") return DType::Float32;
  if (descr == "<f8") return DType::Float64;
  if (descr == "<i4") return DType::Int32;
  if (descr == "<i8") return DType::Int64;
  if (!descr.empty() && descr[0] == '>')
    throw Error(path + ": big-endian .npy data ('" + descr + "') is not supported; save it little-endian");
  throw Error(path + ": unsupported .npy dtype '" + descr + "' (supported: float32, float64, int32, int64)");
}

std::vector<std::int64_t> parse_shape(const std::string& text, const std::string& path) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')')
    throw Error(path + ": malformed .npy header (shape '" + text + "')");
  std::vector<std::int64_t> shape;
  std::string inner = text.substr(1, text.size() - 2);
  std::stringstream parts(inner);
  std::string item;
  while (std::getline(parts, item, ',')) {
    const auto first = item.find_first_not_of(" \tL");
    if (first == std::string::npos) continue;
    const auto last = item.find_last_not_of(" \tL");
    const std::string number = item.substr(first, last - first + 1);
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(number.c_str(), &end, 10);
    if (end == number.c_str() || *end != '\0' || value < 0 || errno == ERANGE)
      throw Error(path + ": malformed .npy header (shape '" + text + "')");
    shape.push_back(value);
  }
  return shape;
}

Header parse_header(const unsigned char* bytes, std::size_t size, const std::string& path, bool allow_fortran_order) {
  if (size < kMagicSize + 4 || std::memcmp(bytes, kMagic, kMagicSize) != 0)
    throw Error(path + ": not a .npy file (bad magic bytes)");
  const int major = bytes[6];
  std::size_t header_len, prefix;
  if (major == 1) {
    header_len = bytes[8] | (bytes[9] << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw Error(path + ": truncated .npy header");
    header_len = std::size_t(bytes[8]) | (std::size_t(bytes[9]) << 8) | (std::size_t(bytes[10]) << 16) |
                 (std::size_t(bytes[11]) << 24);
    prefix = 12;
  } else {
    throw Error(path + ": unsupported .npy format version " + std::to_string(major) + "." + std::to_string(bytes[7]));
  }
  if (prefix + header_len > size) throw Error(path + ": truncated .npy header");
  const std::string dict(reinterpret_cast<const char*>(bytes + prefix), header_len);
  const std::string fortran = dict_value(dict, "fortran_order", path);
  if (fortran == "True" && !allow_fortran_order)
    throw Error(path +
                ": Fortran-order .npy arrays are not supported; save with C order "
                "(np.ascontiguousarray)");
  if (fortran != "False" && fortran != "True") throw Error(path + ": malformed .npy header (fortran_order)");
  Header header;
  header.fortran_order = fortran == "True";
  header.dtype = parse_descr(dict_value(dict, "descr", path), path);
  header.shape = parse_shape(dict_value(dict, "shape", path), path);
  header.data_offset = prefix + header_len;
  return header;
}

struct Mapping {
  void* address = nullptr;
  std::size_t length = 0;
  ~Mapping() {
    if (address != nullptr && address != MAP_FAILED) ::munmap(address, length);
  }
};

}  // namespace

std::int64_t NpyArray::numel() const {
  std::int64_t n = 1;
  for (auto d : shape_) n *= d;
  return n;
}

std::string NpyArray::shape_string() const {
  std::string s = "(";
  for (std::size_t i = 0; i < shape_.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape_[i]);
  }
  return s + (shape_.size() == 1 ? ",)" : ")");
}

void NpyArray::require_ndim(std::size_t n) const {
  if (shape_.size() != n)
    throw Error(path_ + ": expected a " + std::to_string(n) + "-dimensional array, got shape " + shape_string());
}

void NpyArray::require_dtype(DType dtype) const {
  if (dtype_ != dtype) throw Error(path_ + ": expected dtype " + dtype_name(dtype) + ", got " + dtype_name(dtype_));
}

NpyArray NpyArray::open(const std::string& path, bool allow_fortran_order) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->length = static_cast<std::size_t>(st.st_size);
  if (mapping->length == 0) {
    ::close(fd);
    throw Error(path + ": empty file, not a .npy array");
  }
  mapping->address = ::mmap(nullptr, mapping->length, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapping->address == MAP_FAILED) throw Error(path + ": cannot memory-map the file");
  const auto* bytes = static_cast<const unsigned char*>(mapping->address);
  const Header header = parse_header(bytes, mapping->length, path, allow_fortran_order);

  NpyArray array;
  array.path_ = path;
  array.dtype_ = header.dtype;
  array.shape_ = header.shape;
  array.fortran_order_ = header.fortran_order;
  // Checked: a forged header's shape can multiply past 2^64 and wrap to a small size.
  std::size_t expected = dtype_size(header.dtype);
  for (const auto d : header.shape)
    if (__builtin_mul_overflow(expected, static_cast<std::size_t>(d), &expected) ||
        expected > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()))
      throw Error(path + ": .npy shape " + array.shape_string() + " of " + dtype_name(header.dtype) +
                  " is larger than any file (" + std::to_string(mapping->length) + " bytes here)");
  const std::size_t available = mapping->length - header.data_offset;
  if (available < expected)
    throw Error(path + ": truncated .npy data: shape " + array.shape_string() + " of " + dtype_name(header.dtype) +
                " needs " + std::to_string(expected) + " bytes, the file holds " + std::to_string(available));
  if (available > expected)
    throw Error(path + ": .npy header/size mismatch: shape " + array.shape_string() + " of " +
                dtype_name(header.dtype) + " needs " + std::to_string(expected) + " bytes, the file holds " +
                std::to_string(available));
  if (header.data_offset % dtype_size(header.dtype) != 0) {
    // numpy pads its header so that the data starts aligned; a file that does not gets an
    // aligned copy, since typed reads of misaligned data are undefined behaviour.
    std::shared_ptr<std::uint64_t[]> copy(new std::uint64_t[(expected + 7) / 8]);
    std::memcpy(copy.get(), bytes + header.data_offset, expected);
    array.data_ = copy.get();
    array.mapping_ = std::shared_ptr<const void>(copy, copy.get());
    return array;
  }
  array.data_ = bytes + header.data_offset;
  array.mapping_ = std::shared_ptr<const void>(mapping, mapping->address);
  return array;
}

void write_npy(const std::string& path, DType dtype, const std::vector<std::int64_t>& shape, const void* data) {
  std::string dict = std::string("{'descr': '") + descr_of(dtype) + "', 'fortran_order': False, 'shape': (";
  std::size_t count = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) throw Error(path + ": negative dimension in shape");
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
    count *= std::size_t(shape[i]);
  }
  dict += "), }";
  // Pad with spaces and a newline so that the data starts on a 64-byte boundary, as numpy does.
  const bool v2 = dict.size() + 11 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  std::size_t total = prefix + dict.size() + 1;
  const std::size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  const std::size_t header_len = dict.size();
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(kMagic, kMagicSize);
    const unsigned char version[2] = {static_cast<unsigned char>(v2 ? 2 : 1), 0};
    out.write(reinterpret_cast<const char*>(version), 2);
    unsigned char len[4] = {
        static_cast<unsigned char>(header_len & 0xff), static_cast<unsigned char>((header_len >> 8) & 0xff),
        static_cast<unsigned char>((header_len >> 16) & 0xff), static_cast<unsigned char>((header_len >> 24) & 0xff)};
    out.write(reinterpret_cast<const char*>(len), v2 ? 4 : 2);
    out.write(dict.data(), std::streamsize(dict.size()));
    out.write(static_cast<const char*>(data), std::streamsize(count * dtype_size(dtype)));
  });
}

namespace {
template <class Out>
std::vector<Out> converted(const NpyArray& array) {
  const std::size_t n = std::size_t(array.numel());
  std::vector<Out> values(n);
  switch (array.dtype()) {
    case DType::Float32: {
      auto* p = array.as<float>();
      for (std::size_t i = 0; i < n; ++i) values[i] = Out(p[i]);
      break;
    }
    case DType::Float64: {
      auto* p = array.as<double>();
      for (std::size_t i = 0; i < n; ++i) values[i] = Out(p[i]);
      break;
    }
    case DType::Int32: {
      auto* p = array.as<std::int32_t>();
      for (std::size_t i = 0; i < n; ++i) values[i] = Out(p[i]);
      break;
    }
    case DType::Int64: {
      auto* p = array.as<std::int64_t>();
      for (std::size_t i = 0; i < n; ++i) values[i] = Out(p[i]);
      break;
    }
  }
  return values;
}
}  // namespace

std::vector<double> to_double(const NpyArray& array) { return converted<double>(array); }
std::vector<std::int64_t> to_int64(const NpyArray& array) {
  if (array.dtype() == DType::Float32 || array.dtype() == DType::Float64)
    throw Error(array.path() + ": expected integer ids, got " + dtype_name(array.dtype()));
  return converted<std::int64_t>(array);
}

}  // namespace imram

namespace imram {

namespace {

// The bytes before the data, as write_npy lays them out (data on a 64-byte boundary).
std::string npy_header(const std::string& path, DType dtype, const std::vector<std::int64_t>& shape) {
  std::string dict = std::string("{'descr': '") + descr_of(dtype) + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) throw Error(path + ": negative dimension in shape");
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
  }
  dict += "), }";
  const bool v2 = dict.size() + 11 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  const std::size_t total = prefix + dict.size() + 1;
  dict.append((total + 63) / 64 * 64 - total, ' ');
  dict += '\n';
  const std::size_t len = dict.size();
  std::string header(kMagic, kMagicSize);
  header += static_cast<char>(v2 ? 2 : 1);
  header += '\0';
  for (std::size_t byte = 0; byte < (v2 ? 4u : 2u); ++byte) header += static_cast<char>((len >> (8 * byte)) & 0xff);
  return header + dict;
}

}  // namespace

NpyWriter::NpyWriter(const std::string& path, DType dtype, const std::vector<std::int64_t>& shape)
    : path_(path), tmp_(path + ".tmp." + std::to_string(::getpid())), dtype_(dtype) {
  const std::string header = npy_header(path, dtype, shape);
  remove_abandoned_temporaries(path);  // a killed writer's gigabytes would otherwise stay
  expected_ = 1;
  for (const auto dim : shape) expected_ *= std::size_t(dim);
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IoError(path + ": cannot open for writing (" + std::strerror(errno) + ")");
  write_raw(header.data(), header.size());
}

NpyWriter::~NpyWriter() { discard(); }

void NpyWriter::discard() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
}

void NpyWriter::require_dtype(DType dtype) const {
  if (dtype != dtype_)
    throw Error(path_ + ": writing " + dtype_name(dtype) + " values into a " + dtype_name(dtype_) + " array");
}

void NpyWriter::write_raw(const void* bytes, std::size_t size) {
  const char* next = static_cast<const char*>(bytes);
  while (size > 0) {
    const ssize_t done = ::write(fd_, next, size);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) {
      const std::string reason = std::strerror(errno);
      discard();
      throw IoError(path_ + ": write failed (" + reason + ")");
    }
    next += done;
    size -= std::size_t(done);
  }
}

void NpyWriter::write(const void* data, std::size_t elements) {
  if (fd_ < 0) throw Error(path_ + ": write after finish() or after a failed write");
  if (written_ + elements > expected_) {
    discard();
    throw Error(path_ + ": more elements written than the shape holds (" + std::to_string(expected_) + ")");
  }
  write_raw(data, elements * dtype_size(dtype_));
  written_ += elements;
}

void NpyWriter::finish() {
  if (fd_ < 0) throw Error(path_ + ": finish() after finish() or after a failed write");
  if (written_ != expected_) {
    discard();
    throw Error(path_ + ": " + std::to_string(written_) + " elements written, the shape holds " +
                std::to_string(expected_));
  }
  if (::close(fd_) != 0) {
    fd_ = -1;
    ::unlink(tmp_.c_str());
    throw IoError(path_ + ": write failed (disk full?)");
  }
  fd_ = -1;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    ::unlink(tmp_.c_str());
    throw IoError(path_ + ": cannot rename temporary file into place");
  }
}

}  // namespace imram
