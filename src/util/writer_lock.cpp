#include "imram/util/writer_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "imram/error.h"

namespace imram {

WriterLock::WriterLock(const std::string& lock_path, const std::string& what) {
  for (;;) {
    fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(lock_path + ": cannot open the lock (" + std::strerror(errno) + ")");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      char holder[32] = {};
      const auto got = ::pread(fd_, holder, sizeof holder - 1, 0);
      ::close(fd_);
      fd_ = -1;
      if (error != EWOULDBLOCK) throw Error(lock_path + ": cannot lock (" + std::strerror(error) + ")");
      const std::string pid(holder, got > 0 ? std::strcspn(holder, "\n") : 0);
      throw Error(what + " is being written by " + (pid.empty() ? "another process" : "pid " + pid) +
                  "; try again when it is done");
    }
    struct stat locked {
    }, current{};
    if (::fstat(fd_, &locked) == 0 && ::stat(lock_path.c_str(), &current) == 0 && locked.st_ino == current.st_ino &&
        locked.st_dev == current.st_dev)
      break;
    ::close(fd_);
  }
  // Not truncated first (a second writer in between would read no pid): it reads up to "\n".
  // Best effort: without the pid, the second writer's error says "another process".
  const auto pid = std::to_string(::getpid()) + "\n";
  [[maybe_unused]] const auto written = ::pwrite(fd_, pid.data(), pid.size(), 0);
}

WriterLock::~WriterLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace imram
