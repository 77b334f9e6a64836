// The .npy reader: magic, version, header dictionary, shape (with its overflow check), and the
// data size against the file size. The values are read back to catch a size check that lies.
#include "fuzz_input.h"
#include "imram/data/npy.h"
#include "imram/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = imram::fuzz::write_input("input.npy", data, size);
  try {
    const auto array = imram::NpyArray::open(path, /*allow_fortran_order=*/true);
    const auto* bytes = static_cast<const unsigned char*>(array.data());
    const std::size_t n = std::size_t(array.numel()) * imram::dtype_size(array.dtype());
    volatile unsigned char sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum = sum + bytes[i];
    if (array.dtype() == imram::DType::Float32 || array.dtype() == imram::DType::Float64) (void)imram::to_double(array);
  } catch (const imram::Error&) {
  }
  return 0;
}
