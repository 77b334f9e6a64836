#pragma once
// Child processes for the tests, started one way: an argv (no shell unless asked for), extra
// environment variables, and stdout + stderr inherited, discarded, written to a file or captured
// through a pipe. Waits are bounded and wake on the event itself (the process's exit through a
// pidfd, output through poll), never on a fixed sleep. A Process still running when it goes out
// of scope is killed, so a failed assertion leaves nothing behind.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace imram::test {

struct SpawnOptions {
  enum class Output { Inherit, Discard, File, Pipe };
  using Environment = std::vector<std::pair<std::string, std::string>>;
  SpawnOptions(Output output_ = Output::Inherit, std::string file_ = "", Environment environment_ = {})
      : output(output_), file(std::move(file_)), environment(std::move(environment_)) {}

  Output output;            // stdout and stderr together
  std::string file;         // for Output::File (truncated)
  Environment environment;  // added to this process's
};

class Process {
 public:
  Process(const std::vector<std::string>& argv, const SpawnOptions& options = {}) {
    std::vector<std::string> environment;
    for (char** variable = environ; *variable != nullptr; ++variable) {
      const std::string entry = *variable;
      const auto name = entry.substr(0, entry.find('='));
      const bool replaced = std::any_of(options.environment.begin(), options.environment.end(),
                                        [&](const auto& extra) { return extra.first == name; });
      if (!replaced) environment.push_back(entry);
    }
    for (const auto& [name, value] : options.environment) environment.push_back(name + "=" + value);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    int pipe_ends[2] = {-1, -1};
    using Output = SpawnOptions::Output;
    if (options.output == Output::Discard || options.output == Output::File) {
      const auto& path = options.output == Output::File ? options.file : std::string("/dev/null");
      posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    } else if (options.output == Output::Pipe) {
      // Close-on-exec: no other child started meanwhile keeps the write end open.
      if (::pipe2(pipe_ends, O_CLOEXEC) != 0) throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
      posix_spawn_file_actions_adddup2(&actions, pipe_ends[1], STDOUT_FILENO);
      posix_spawn_file_actions_adddup2(&actions, pipe_ends[1], STDERR_FILENO);
    }
    const auto arguments = pointers(argv), variables = pointers(environment);
    const int failed = ::posix_spawn(&pid_, argv.at(0).c_str(), &actions, nullptr, arguments.data(), variables.data());
    posix_spawn_file_actions_destroy(&actions);
    if (pipe_ends[1] >= 0) ::close(pipe_ends[1]);
    output_fd_ = pipe_ends[0];
    if (failed != 0) {
      if (output_fd_ >= 0) ::close(output_fd_);
      throw std::runtime_error("cannot start " + argv.at(0) + ": " + std::strerror(failed));
    }
    pidfd_ = int(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) throw std::runtime_error("pidfd_open: " + std::string(std::strerror(errno)));
  }
  ~Process() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (pidfd_ >= 0) ::close(pidfd_);
    if (output_fd_ >= 0) ::close(output_fd_);
  }
  Process(Process&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        pidfd_(std::exchange(other.pidfd_, -1)),
        output_fd_(std::exchange(other.output_fd_, -1)),
        status_(std::exchange(other.status_, 0)),
        raw_status_(other.raw_status_),
        output_(std::move(other.output_)) {}
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process& operator=(Process&&) = delete;

  pid_t pid() const { return pid_; }

  // Its exit status (128 + the signal that killed it), or nothing while it still runs after
  // `seconds`.
  std::optional<int> wait_for(double seconds) {
    if (!status_) {
      pollfd exited{pidfd_, POLLIN, 0};
      if (::poll(&exited, 1, milliseconds(seconds)) <= 0) return std::nullopt;
      ::waitpid(pid_, &raw_status_, 0);
      status_ = WIFEXITED(raw_status_) ? WEXITSTATUS(raw_status_) : 128 + WTERMSIG(raw_status_);
    }
    return status_;
  }

  // After wait_for has seen it end: whether a signal ended it.
  bool signaled() const { return status_ && WIFSIGNALED(raw_status_); }

  void kill(int signal) {
    if (!status_) ::kill(pid_, signal);
  }

  // Output::Pipe: reads until what it has written matches `pattern`, its output ends, or `seconds`
  // pass; the match's groups (the whole match first), empty when none.
  std::vector<std::string> read_until(const std::regex& pattern, double seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::smatch match;
    while (!std::regex_search(output_, match, pattern)) {
      const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0 || !read_some(left)) return {};
    }
    return {match.begin(), match.end()};
  }

  // Output::Pipe: all it has written once wait_for has seen it end; before, what it has written
  // so far (without waiting: a failed test's message must not hang on a running server).
  const std::string& output() {
    while (read_some(status_ ? -1 : 0)) {
    }
    return output_;
  }

  // Output::Pipe: all it writes, read until it closes its output (while it runs, so that it
  // never blocks on a full pipe).
  const std::string& read_to_end() {
    while (read_some(-1)) {
    }
    return output_;
  }

 private:
  static std::vector<char*> pointers(const std::vector<std::string>& strings) {
    std::vector<char*> out;
    for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
  }
  static int milliseconds(double seconds) {
    return seconds < 0 ? -1 : int(std::min(std::ceil(seconds * 1000), double(INT_MAX)));
  }

  // Appends what the pipe has within `seconds` (negative: no bound); false at its end or timeout.
  bool read_some(double seconds) {
    pollfd readable{output_fd_, POLLIN, 0};
    if (output_fd_ < 0 || ::poll(&readable, 1, milliseconds(seconds)) <= 0) return false;
    char buffer[4096];
    const auto n = ::read(output_fd_, buffer, sizeof buffer);
    if (n <= 0) return false;
    output_.append(buffer, std::size_t(n));
    return true;
  }

  pid_t pid_ = -1;
  int pidfd_ = -1, output_fd_ = -1;
  std::optional<int> status_;
  int raw_status_ = 0;
  std::string output_;
};

struct CommandResult {
  int status = -1;     // exit status; -1 when killed by a signal
  std::string output;  // stdout and stderr
};

// Runs `argv` to completion, stdout and stderr captured together.
inline CommandResult run_process(const std::vector<std::string>& argv,
                                 const std::vector<std::pair<std::string, std::string>>& environment = {}) {
  Process process(argv, {SpawnOptions::Output::Pipe, "", environment});
  CommandResult result;
  result.output = process.read_to_end();
  const int status = *process.wait_for(-1);
  result.status = process.signaled() ? -1 : status;
  return result;
}

}  // namespace imram::test
