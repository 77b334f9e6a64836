#pragma once
// Files whose committed length a manifest counts (the index directory's store): an append-only
// writer that checks every write and keeps a running checksum, a read-only mapping of the
// committed bytes, and the checksum or the bytes of a committed prefix. POSIX.
#include <cstdint>
#include <string>

#include "imram/util/fnv.h"

namespace imram {

// FNV-1a 64 of the first `bytes` of `path`, continuing from `hash`; a shorter file is an error.
std::uint64_t hash_file(const std::string& path, std::uint64_t bytes, std::uint64_t hash = kFnv1aOffset);

// The first `bytes` of a file: what the manifest commits of it.
std::string read_committed(const std::string& path, std::uint64_t bytes);

// An output file written through a raw descriptor; every write checked. Opening truncates it to
// `keep_bytes` (bytes beyond are from an addition that never committed) and continues `hash`.
class AppendFile {
 public:
  AppendFile() = default;
  AppendFile(const std::string& path, std::uint64_t keep_bytes, std::uint64_t hash);
  AppendFile(AppendFile&& other) noexcept { *this = std::move(other); }
  AppendFile& operator=(AppendFile&& other) noexcept;
  ~AppendFile();
  void write(const void* data, std::size_t size);
  void sync();
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t hash() const { return hash_; }

 private:
  [[noreturn]] void fail(const char* what);
  std::string path_;
  int fd_ = -1;
  std::uint64_t bytes_ = 0;
  std::uint64_t hash_ = 0;
};

// A read-only mapping of the first `bytes` of a file (a shorter file is an error).
class MappedFile {
 public:
  MappedFile(const std::string& path, std::uint64_t bytes);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return static_cast<const char*>(address_); }

 private:
  void* address_ = nullptr;
  std::uint64_t bytes_ = 0;
};

}  // namespace imram
