#pragma once
// Runs the imram binary as a user would, for tests of what the command line prints and exits.
#include <string>

#include "process.h"
#include "test_paths.h"

namespace imram::test {

// Runs `command` in a shell (the tests write quoting and `cd DIR &&` as a user types them),
// stdout and stderr together.
inline CommandResult run_shell(const std::string& command) { return run_process({"/bin/sh", "-c", command}); }

// `prefix` goes before the binary (e.g. "cd DIR &&"); arguments are passed as written.
inline CommandResult imram_cli(const std::string& arguments, const std::string& prefix = "") {
  return run_shell(prefix + " " + std::string(IMRAM_BINARY) + " " + arguments);
}

}  // namespace imram::test
