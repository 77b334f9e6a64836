// How long an idle OpenMP thread spins before it sleeps. libgomp's default (300,000 spins, about
// 3 ms) is made for a machine of one's own: beside any other busy process the spinning threads
// take the cores that the working ones need: here a training step beside one other LibTorch
// process ran 12-18x slower than alone (docs/performance.md#openmp-waiting). A spin of 10,000
// (about 0.1 ms) kept the idle-machine speed within the noise and gave most of that back.
//
// libgomp reads GOMP_SPINCOUNT once, in its own constructor, before main; an executable's
// .preinit_array runs before the constructors of the libraries it loads, so it is the one place
// where the binary can choose. The user's OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins.
#include <cstdlib>

namespace {

constexpr const char* kSpinCount = "10000";

void choose_openmp_wait() {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  setenv("GOMP_SPINCOUNT", kSpinCount, /*overwrite=*/0);
}

__attribute__((section(".preinit_array"), used)) void (*const kChooseOpenmpWait)() = choose_openmp_wait;

}  // namespace
