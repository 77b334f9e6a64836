#pragma once
// What `imram doctor` reports: the facts that decide whether this machine runs IMRAM fast.
#include <string>
#include <vector>

namespace imram {

struct DoctorReport {
  std::string torch_version;
  std::string blas_library;        // the shared object whose sgemm the float32 products call
  bool blas_is_reference = false;  // netlib's reference BLAS: ~40x slower matrix products
  int threads = 0;
  std::string fused_gate_simd;  // the instruction set of the fused gate kernel (IMRAM_SIMD)
  std::vector<std::string> devices;
  std::vector<std::string> openmp_waiting;  // OMP_WAIT_POLICY / GOMP_SPINCOUNT as set
  double matmul_gflops = 0;                 // float32 1024 x 1024 x 1024 product
  std::vector<std::string> warnings;
};

DoctorReport run_doctor();
std::string doctor_text(const DoctorReport& report);
std::string doctor_json(const DoctorReport& report);

// Measured float32 matrix-product throughput (n x n x n), best of a few runs.
double measure_matmul_gflops(int n = 1024);

}  // namespace imram
