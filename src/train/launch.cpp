#include "imram/train/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <thread>

#include "imram/error.h"
#include "imram/train/distributed.h"
#include "imram/util/log.h"

namespace imram {

namespace {

using Clock = std::chrono::steady_clock;
std::atomic<int> g_forward_signal{0};
extern "C" void remember_signal(int signal) { g_forward_signal = signal; }

}  // namespace

// The kernel's choice of a free port; the ranks bind it a moment later.
int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw IoError(std::string("--nproc: cannot open a socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) == 0;
  ::close(fd);
  if (!ok) throw IoError(std::string("--nproc: cannot find a free loopback port: ") + std::strerror(errno));
  return ntohs(address.sin_port);
}

namespace {

std::string describe(int status) {
  if (WIFSTOPPED(status))
    return std::string("was stopped by signal ") + std::to_string(WSTOPSIG(status)) + " (" +
           strsignal(WSTOPSIG(status)) + ")";
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

std::vector<std::string> command_line_without_nproc() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> arguments;
  for (std::size_t begin = 0; begin < all.size();) {
    const auto end = all.find('\0', begin);
    arguments.push_back(all.substr(begin, end - begin));
    begin = end == std::string::npos ? all.size() : end + 1;
  }
  std::vector<std::string> kept;
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    if (arguments[i] == "--nproc") {
      ++i;
      continue;
    }
    if (arguments[i].rfind("--nproc=", 0) == 0) continue;
    kept.push_back(arguments[i]);
  }
  return kept;
}

int run_local_world(int nproc, const std::vector<std::string>& arguments, WorldEnding world_ending) {
  if (nproc < 1) throw Error("--nproc must be >= 1");
  if (const auto spec = world_from_environment())
    throw Error("--nproc: this process is already rank " + std::to_string(spec->rank) + " of a world of " +
                std::to_string(spec->size) + " (" + spec->launcher + ")");
  const int port = free_loopback_port();
  std::vector<pid_t> ranks;
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) throw IoError(std::string("--nproc: fork failed: ") + std::strerror(errno));
    if (pid == 0) {
      // A launcher that is killed outright takes its ranks along (they save `last` on SIGTERM).
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("IMRAM_LAUNCHER", "--nproc", 1);
      std::vector<char*> argv;
      for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      // A forked child: no lock may be taken here, so not the log sink.
      std::cerr << "imram: error: --nproc: cannot start rank " << rank << ": " << std::strerror(errno) << "\n";
      std::_Exit(127);
    }
    ranks.push_back(pid);
  }
  std::string started = "imram: --nproc: started " + std::to_string(nproc) + " ranks (pids";
  for (const pid_t pid : ranks) started += " " + std::to_string(pid);
  log_note(started + "), rendezvous on 127.0.0.1:" + std::to_string(port));
  // Ctrl-C reaches every rank through the terminal's process group: the launcher only waits.
  auto previous_int = std::signal(SIGINT, SIG_IGN);
  auto previous_term = std::signal(SIGTERM, remember_signal);
  // A rank that fails ends the world: its peers would wait on it in their next collective, and
  // a stopped rank (SIGSTOP) never ends at all. The rest get SIGTERM (a stopped one SIGKILL,
  // which is all it can take), then SIGKILL after a grace period.
  constexpr auto kGrace = std::chrono::seconds(5);
  std::vector<bool> stopped(std::size_t(nproc), false);
  std::optional<Clock::time_point> ending;
  bool killed = false;
  const auto end_world = [&] {
    if (ending) return;
    ending = Clock::now();
    for (int rank = 0; rank < nproc; ++rank)
      if (ranks[std::size_t(rank)] > 0)
        ::kill(ranks[std::size_t(rank)], stopped[std::size_t(rank)] ? SIGKILL : SIGTERM);
  };
  int result = 0, running = nproc;
  while (running > 0) {
    if (const int signal = g_forward_signal.exchange(0))
      for (const pid_t pid : ranks)
        if (pid > 0) ::kill(pid, signal);
    if (ending && !killed && Clock::now() - *ending > kGrace) {
      killed = true;
      for (const pid_t pid : ranks)
        if (pid > 0) ::kill(pid, SIGKILL);
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG | WUNTRACED | WCONTINUED);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    for (int rank = 0; rank < nproc; ++rank) {
      if (ranks[std::size_t(rank)] != pid) continue;
      if (WIFSTOPPED(status) || WIFCONTINUED(status)) {
        // Stopped is not yet failed (Ctrl-Z stops the launcher too): the peers' heartbeat decides.
        stopped[std::size_t(rank)] = WIFSTOPPED(status);
        if (WIFSTOPPED(status))
          log_note("imram: rank " + std::to_string(rank) + " (pid " + std::to_string(pid) + ") " + describe(status));
        if (ending && WIFSTOPPED(status)) ::kill(pid, SIGKILL);
        break;
      }
      ranks[std::size_t(rank)] = -1;
      --running;
      const bool interrupted = WIFEXITED(status) && WEXITSTATUS(status) == kInterruptedExitStatus;
      if (interrupted && result == 0 && world_ending == WorldEnding::kAnyRankFails) result = kInterruptedExitStatus;
      const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0) && !interrupted;
      auto failure = "rank " + std::to_string(rank) + " (pid " + std::to_string(pid) + ") " + describe(status);
      if (world_ending == WorldEnding::kRankZeroEnds && rank == 0) {
        result = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        if (failed) log_error(failure + "; ending the world");
        end_world();
      } else if (world_ending == WorldEnding::kRankZeroEnds && failed && !ending) {
        log_error(failure + "; rank 0 goes on without it");
      } else if (failed && !ending) {
        for (int other = 0; other < nproc; ++other)
          if (stopped[std::size_t(other)]) failure += "; rank " + std::to_string(other) + " is stopped";
        log_error(failure + "; ending the world");
        result = 1;
        end_world();
      }
    }
  }
  std::signal(SIGINT, previous_int);
  std::signal(SIGTERM, previous_term);
  return result;
}

}  // namespace imram
