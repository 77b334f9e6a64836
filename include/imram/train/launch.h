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

// What ends a world of ranks on this machine. A job that every rank's work makes whole (training,
// evaluation, index building) ends with its first failed rank. A service whose rank 0 answers
// (a sharded search) goes on without a failed rank, degraded, and ends with rank 0.
enum class WorldEnding { kAnyRankFails, kRankZeroEnds };

// Starts the ranks with `arguments` as their argv, rendezvous on a free loopback port; forwards
// SIGTERM to them and leaves Ctrl-C to reach them from the terminal. Returns 0 when every rank
// succeeded, kInterruptedExitStatus when they were interrupted, and 1 when one failed (killed,
// or left stopped until its peers' heartbeat gave up on it): that rank is named on stderr and
// the others are ended. kRankZeroEnds: a failed rank other than 0 is named and the others go on;
// when rank 0 ends, the rest are ended and rank 0's status is returned. Refused in a process that
// is itself a rank of a world.
int run_local_world(int nproc, const std::vector<std::string>& arguments,
                    WorldEnding ending = WorldEnding::kAnyRankFails);

// The exit status of a run stopped by SIGINT/SIGTERM with its state saved (the command line's
// convention, cli/command.h): the launcher passes it on without calling it a failure.
inline constexpr int kInterruptedExitStatus = 3;

}  // namespace imram
