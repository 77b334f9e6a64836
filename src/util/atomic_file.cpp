#include "imram/util/atomic_file.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "imram/error.h"

namespace fs = std::filesystem;

namespace imram {

namespace {
std::string temporary_sibling(const std::string& path, const char* tag) {
  return path + "." + tag + "." + std::to_string(::getpid());
}
}  // namespace

void remove_abandoned_temporaries(const std::string& path) {
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::directory_iterator it(parent, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid == ::getpid() || pid <= 0) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) remove_tree(it->path().string());
  }
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string tmp = temporary_sibling(path, "tmp");
  remove_abandoned_temporaries(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw IoError(path + ": cannot open for writing (" + std::strerror(errno) + ")");
    try {
      write(out);
    } catch (...) {
      out.close();
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw;
    }
    out.flush();
    // close() writes what the stream still buffers: its failure is a lost write too.
    if (out) out.close();
    if (!out) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw IoError(path + ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw IoError(path + ": cannot rename temporary file into place");
  }
}

void require_writable_directory(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(dir + ": cannot create the directory (" + ec.message() + ")");
  const std::string probe = temporary_sibling(dir + "/.write-test", "tmp");
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw IoError(dir + ": cannot write in this directory (" + std::strerror(errno) + ")");
  ::close(fd);
  ::unlink(probe.c_str());
}

void remove_tree(const std::string& path) {
  // Depth first, without following symbolic links: children go before their directory.
  ::nftw(
      path.c_str(),
      [](const char* entry, const struct stat*, int, struct FTW*) {
        ::remove(entry);  // what cannot be removed is left; the walk goes on
        return 0;
      },
      16, FTW_DEPTH | FTW_PHYS);
}

std::string fresh_temporary_directory(const std::string& dir) {
  const std::string tmp = temporary_sibling(dir, "tmp");
  remove_abandoned_temporaries(dir);
  remove_tree(tmp);
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) throw IoError(dir + ": cannot create temporary directory " + tmp + " (" + ec.message() + ")");
  return tmp;
}

void move_directory_into_place(const std::string& tmp, const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    // Exchanged, not renamed aside first: at every instant a directory is at `dir`, and a kill
    // after the exchange leaves the old one as a temporary that the next writer removes.
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
      const std::string reason = std::strerror(errno);
      remove_tree(tmp);
      throw IoError(dir + ": cannot swap the new directory into place (" + reason + ")");
    }
    remove_tree(tmp);
    return;
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    remove_tree(tmp);
    throw IoError(dir + ": cannot move the new directory into place (" + ec.message() + ")");
  }
}

void write_directory_atomically(const std::string& dir, const std::function<void(const std::string&)>& fill) {
  const std::string tmp = fresh_temporary_directory(dir);
  try {
    fill(tmp);
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  move_directory_into_place(tmp, dir);
}

void require_own_directory(const std::string& dir, const std::string& kind, const std::vector<std::string>& signature) {
  std::error_code ec;
  const auto status = fs::symlink_status(dir, ec);
  if (ec || status.type() == fs::file_type::not_found) return;
  if (status.type() != fs::file_type::directory)
    throw Error(dir + ": exists and is not a directory; refusing to replace it with a " + kind);
  if (fs::is_empty(dir, ec) && !ec) return;
  for (const auto& entry : signature)
    if (!fs::exists(fs::path(dir) / entry, ec))
      throw Error(dir + ": exists and is not a " + kind + " (no " + entry +
                  "); refusing to replace it, choose another output or remove it yourself");
}

}  // namespace imram
