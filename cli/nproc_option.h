#pragma once
// `--nproc N` and `--nproc-max N`, for the commands that run as a world of ranks on this machine
// (train, eval): more ranks than cores only contend for them (1,000 ranks on 16 cores did
// nothing for minutes), so N is bounded by the cores unless --nproc-max says more.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <string>
#include <thread>

#include "command.h"

namespace imram::cli {

struct NprocOptions {
  int nproc = 0;
  int nproc_max = 0;
};

inline void add_nproc_options(CLI::App* sub, NprocOptions& o, const std::string& what) {
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  sub->add_option("--nproc", o.nproc,
                  "run as N ranks on this machine (" + what + "); at most the number of cores (" +
                      std::to_string(cores) + ") unless --nproc-max says more")
      ->check(kAtLeastOne);
  sub->add_option("--nproc-max", o.nproc_max, "allow --nproc up to N (default: the number of cores)")
      ->check(kAtLeastOne);
}

// In the command's callback: a usage error (exit 2) before anything starts.
inline void check_nproc(const NprocOptions& o) {
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const int most = o.nproc_max > 0 ? o.nproc_max : cores;
  if (o.nproc > most)
    throw CLI::ValidationError(
        "--nproc", std::to_string(o.nproc) + " ranks is more than " + std::to_string(most) +
                       (o.nproc_max > 0 ? " (--nproc-max)" : " (the number of cores; raise it with --nproc-max)"));
}

}  // namespace imram::cli
