#pragma once
// Runs the imram binary as a user would, for tests of what the command line prints and exits.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "test_paths.h"

namespace imram::test {

struct CommandResult {
  int status = -1;     // exit status; -1 when killed by a signal
  std::string output;  // stdout and stderr
};

// Runs `command` in a shell, stderr merged into stdout.
inline CommandResult run_shell(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  std::size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// `prefix` goes before the binary (e.g. "cd DIR &&"); arguments are passed as written.
inline CommandResult imram_cli(const std::string& arguments, const std::string& prefix = "") {
  return run_shell(prefix + " " + std::string(IMRAM_BINARY) + " " + arguments);
}

}  // namespace imram::test
