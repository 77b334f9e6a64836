#include "imram/util/atomic_file.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <unistd.h>

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

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  const std::string tmp = temporary_sibling(path, "tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path + ": cannot open for writing");
    try {
      write(out);
    } catch (...) {
      out.close();
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw;
    }
    out.flush();
    if (!out) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw Error(path + ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(path + ": cannot rename temporary file into place");
  }
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

void write_directory_atomically(const std::string& dir,
                                const std::function<void(const std::string&)>& fill) {
  const std::string tmp = temporary_sibling(dir, "tmp");
  std::error_code ec;
  remove_tree(tmp);
  fs::create_directories(tmp, ec);
  if (ec) throw Error(dir + ": cannot create temporary directory " + tmp);
  try {
    fill(tmp);
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  if (fs::exists(dir)) {
    // An atomic swap: at every instant either the old or the new directory is at `dir`.
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
      remove_tree(tmp);
      throw Error(dir + ": cannot swap the new directory into place");
    }
    remove_tree(tmp);
    return;
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    remove_tree(tmp);
    throw Error(dir + ": cannot rename temporary directory into place");
  }
}

}  // namespace imram
