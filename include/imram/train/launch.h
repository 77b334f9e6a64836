#pragma once
// `imram train --nproc N`: this program started again as ranks 0..N-1 of a world on this machine,
// with the torchrun variables set (train/distributed.h reads them), and supervised until done.
#include <string>
#include <vector>

namespace imram {

// This process's command line (argv), from /proc/self/cmdline, without `--nproc N`/`--nproc=N`.
std::vector<std::string> command_line_without_nproc();

// A loopback TCP port that is free now (for a world's rendezvous).
int free_loopback_port();

// Starts the ranks with `arguments` as their argv, rendezvous on a free loopback port; forwards
// SIGTERM to them and leaves Ctrl-C to reach them from the terminal. Returns 0 when every rank
// succeeded, kInterruptedExitStatus when they were interrupted, and 1 when one failed (killed,
// or left stopped until its peers' heartbeat gave up on it): that rank is named on stderr and
// the others are ended. Refused in a process that is itself a rank of a world.
int run_local_world(int nproc, const std::vector<std::string>& arguments);

// The exit status of a run stopped by SIGINT/SIGTERM with its state saved (the command line's
// convention, cli/command.h): the launcher passes it on without calling it a failure.
inline constexpr int kInterruptedExitStatus = 3;

}  // namespace imram
