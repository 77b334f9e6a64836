#include "imram/runtime/openmp_waiting.h"

#include <unistd.h>

#include <cstdlib>

namespace imram {

namespace {
constexpr const char* kWaitingVariables[] = {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"};
}  // namespace

void reexec_with_default_openmp_waiting(char** argv) {
  for (const char* name : kWaitingVariables)
    if (std::getenv(name) != nullptr) return;
  if (::setenv("GOMP_SPINCOUNT", kDefaultGompSpinCount, 1) != 0) return;
  ::execv("/proc/self/exe", argv);
  // Not executed again: libgomp keeps its default, and the variable must not tell children or
  // `doctor` otherwise.
  ::unsetenv("GOMP_SPINCOUNT");
}

std::vector<std::string> openmp_waiting_settings() {
  std::vector<std::string> settings;
  for (const char* name : kWaitingVariables)
    if (const char* value = std::getenv(name)) settings.push_back(std::string(name) + "=" + value);
  return settings;
}

}  // namespace imram
