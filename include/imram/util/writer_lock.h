#pragma once
// One writer at a time: an advisory lock (flock) on a lock file, held while a writer lives and
// released by the kernel when its process dies, so a crashed writer never blocks the next. The
// file holds the holder's pid, which the error of a writer that comes second names.
#include <string>

namespace imram {

class WriterLock {
 public:
  // Locks `lock_path` (created if missing) or throws Error "<what> is being written by pid N;
  // try again when it is done". A lock file that was replaced while this waited for it (a
  // directory swapped into place) is opened again.
  WriterLock(const std::string& lock_path, const std::string& what);
  ~WriterLock();
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace imram
