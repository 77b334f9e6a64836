#include "imram/engine/doctor.h"

#include <dlfcn.h>

#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "imram/engine/fused_gate.h"
#include "imram/runtime/openmp_waiting.h"
#include "imram/runtime/runtime.h"

namespace imram {

namespace {

// The library whose sgemm the process's float32 products call: the one the dynamic linker binds
// first, which is not always the first BLAS mapped (a library path can put netlib's libblas.so.3
// ahead of the OpenBLAS that LAPACK still pulls in). Empty when no sgemm is exported (a LibTorch
// with MKL linked in statically).
std::string blas_of_products() {
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info info{};
  if (!sgemm || !dladdr(sgemm, &info) || !info.dli_fname) return "";
  std::error_code ec;
  const auto resolved = std::filesystem::canonical(info.dli_fname, ec);
  return ec ? std::string(info.dli_fname) : resolved.string();
}

// Netlib's reference BLAS: a BLAS that none of the optimised families names.
bool is_reference_blas(const std::string& library) {
  const auto name = std::filesystem::path(library).filename().string();
  if (name.find("blas") == std::string::npos) return false;  // MKL's, or LibTorch itself
  for (const char* optimised : {"openblas", "mkl", "blis", "atlas", "cublas"})
    if (library.find(optimised) != std::string::npos) return false;
  return true;
}

}  // namespace

double measure_matmul_gflops(int n) {
  torch::NoGradGuard no_grad;
  auto a = torch::randn({n, n});
  auto b = torch::randn({n, n});
  auto c = torch::mm(a, b);  // warm-up: thread pool start, page faults
  double best = 1e30;
  for (int run = 0; run < 5; ++run) {
    const auto start = std::chrono::steady_clock::now();
    c = torch::mm(a, b);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, seconds);
  }
  return 2.0 * n * double(n) * n / best / 1e9;
}

DoctorReport run_doctor() {
  DoctorReport report;
  report.torch_version = TORCH_VERSION;
  report.threads = thread_count();
  report.openmp_waiting = openmp_waiting_settings();
  report.fused_gate_simd = fused_gate_instruction_set();
  report.matmul_gflops = measure_matmul_gflops();
  report.blas_library = blas_of_products();
  report.blas_is_reference = is_reference_blas(report.blas_library);
  report.devices.push_back("cpu");
  if (torch::cuda::is_available())
    for (std::size_t i = 0; i < std::size_t(torch::cuda::device_count()); ++i)
      report.devices.push_back("cuda:" + std::to_string(i));
  if (report.blas_is_reference)
    report.warnings.push_back(
        "the reference (netlib) BLAS is loaded: matrix products run ~40x "
        "slower; install libopenblas0-openmp (./run setup)");
  if (report.matmul_gflops < 10 * report.threads)
    report.warnings.push_back("matrix products are slow (" + std::to_string(int(report.matmul_gflops)) +
                              " GFLOP/s); check the BLAS and the thread count");
  return report;
}

std::string doctor_text(const DoctorReport& report) {
  std::ostringstream out;
  out << "LibTorch   " << report.torch_version << "\n"
      << "BLAS       "
      << (report.blas_library.empty() ? "(no sgemm exported: built into LibTorch)" : report.blas_library)
      << (report.blas_is_reference ? "  [reference BLAS: SLOW]" : "") << "\n"
      << "threads    " << report.threads << "\n"
      << "OpenMP     ";
  for (std::size_t i = 0; i < report.openmp_waiting.size(); ++i) out << (i ? ", " : "") << report.openmp_waiting[i];
  out << (report.openmp_waiting.empty() ? "libgomp's defaults (idle threads spin ~3 ms)" : "") << "\n"
      << "SIMD       " << report.fused_gate_simd
      << " (imram's kernels: the fused gate, the memory product; IMRAM_SIMD narrows them)\n"
      << "devices    ";
  for (std::size_t i = 0; i < report.devices.size(); ++i) out << (i ? ", " : "") << report.devices[i];
  out << "\n";
  char gflops[64];
  std::snprintf(gflops, sizeof gflops, "%.1f", report.matmul_gflops);
  out << "matmul     " << gflops << " GFLOP/s (float32, 1024^3)\n";
  for (const auto& warning : report.warnings) out << "warning: " << warning << "\n";
  return out.str();
}

std::string doctor_json(const DoctorReport& report) {
  nlohmann::ordered_json json{{"torch_version", report.torch_version},
                              {"blas_library", report.blas_library},
                              {"blas_is_reference", report.blas_is_reference},
                              {"threads", report.threads},
                              {"openmp_waiting", report.openmp_waiting},
                              {"fused_gate_simd", report.fused_gate_simd},
                              {"devices", report.devices},
                              {"matmul_gflops", report.matmul_gflops},
                              {"warnings", report.warnings}};
  return json.dump();
}

}  // namespace imram
