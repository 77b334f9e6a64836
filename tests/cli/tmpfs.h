#pragma once
// A small tmpfs mounted for one test (needs root or CAP_SYS_ADMIN; mounted() says whether it
// could be): a disk that fills up, or that turns read-only.
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace imram::test {

class Tmpfs {
 public:
  Tmpfs(const std::string& dir, std::size_t bytes) : dir_(dir), bytes_(bytes) {
    std::filesystem::create_directories(dir);
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, options().c_str()) == 0;
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  bool mounted() const { return mounted_; }
  std::size_t available() const {
    struct statvfs stats {};
    ::statvfs(dir_.c_str(), &stats);
    return std::size_t(stats.f_bavail) * stats.f_frsize;
  }
  // Fills the file system until only `keep` bytes remain free.
  void fill_leaving(std::size_t keep) {
    std::ofstream filler(dir_ + "/filler", std::ios::binary);
    const std::string page(4096, 'x');
    while (available() > keep + page.size() && filler.write(page.data(), page.size())) filler.flush();
  }
  void unfill() { std::filesystem::remove(dir_ + "/filler"); }
  // Root ignores permission bits: only a read-only mount refuses it a write.
  bool make_read_only() {
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, options().c_str()) == 0;
  }

 private:
  std::string options() const { return "size=" + std::to_string(bytes_); }
  std::string dir_;
  std::size_t bytes_;
  bool mounted_ = false;
};

}  // namespace imram::test
