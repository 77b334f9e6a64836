#include "imram/util/counted_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>
#include <vector>

#include "imram/error.h"

namespace imram {

std::uint64_t hash_file(const std::string& path, std::uint64_t bytes, std::uint64_t hash) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  std::uint64_t left = bytes;
  while (left > 0 && in) {
    in.read(buffer.data(), std::streamsize(std::min<std::uint64_t>(left, buffer.size())));
    const auto got = std::uint64_t(in.gcount());
    if (got == 0) break;
    hash = fnv1a64(buffer.data(), got, hash);
    left -= got;
  }
  if (left > 0) throw Error(path + ": shorter than the manifest says");
  return hash;
}

std::string read_committed(const std::string& path, std::uint64_t bytes) {
  std::ifstream file(path, std::ios::binary);
  std::string committed(std::size_t(bytes), '\0');
  if (!file.read(committed.data(), std::streamsize(committed.size())))
    throw Error(path + ": shorter than the manifest counts");
  return committed;
}

AppendFile::AppendFile(const std::string& path, std::uint64_t keep_bytes, std::uint64_t hash)
    : path_(path), bytes_(keep_bytes), hash_(hash) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
  if (fd_ < 0) throw IoError(path + ": cannot open for writing (" + std::strerror(errno) + ")");
  if (::ftruncate(fd_, off_t(keep_bytes)) != 0 || ::lseek(fd_, off_t(keep_bytes), SEEK_SET) < 0)
    fail("cannot truncate");
}

AppendFile& AppendFile::operator=(AppendFile&& other) noexcept {
  std::swap(path_, other.path_);
  std::swap(fd_, other.fd_);
  std::swap(bytes_, other.bytes_);
  std::swap(hash_, other.hash_);
  return *this;
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::write(const void* data, std::size_t size) {
  hash_ = fnv1a64(data, size, hash_);
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const auto written = ::write(fd_, bytes, size);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) fail("write failed");
    bytes += written;
    size -= std::size_t(written);
    bytes_ += std::uint64_t(written);
  }
}

void AppendFile::sync() {
  if (::fsync(fd_) != 0) fail("cannot flush to disk");
}

void AppendFile::fail(const char* what) { throw IoError(path_ + ": " + what + " (" + std::strerror(errno) + ")"); }

MappedFile::MappedFile(const std::string& path, std::uint64_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || std::uint64_t(st.st_size) < bytes) {
    ::close(fd);
    throw Error(path + ": truncated: " + std::to_string(st.st_size) + " bytes, the manifest counts " +
                std::to_string(bytes));
  }
  address_ = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (address_ == MAP_FAILED) {
    address_ = nullptr;
    throw IoError(path + ": cannot map (" + std::strerror(errno) + ")");
  }
}

MappedFile::~MappedFile() {
  if (address_) ::munmap(address_, bytes_);
}

}  // namespace imram
