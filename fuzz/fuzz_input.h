#pragma once
// Shared by the fuzz targets: most parsers read files, so each input goes to a scratch file of
// this process first. Only imram::Error is an expected outcome; any other exception escapes
// and libFuzzer reports it (a raw library message would reach the user the same way).
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

namespace imram::fuzz {

inline std::string scratch_dir() {
  static const std::string dir = [] {
    std::string path = "/tmp/imram_fuzz_" + std::to_string(::getpid());
    ::mkdir(path.c_str(), 0700);
    return path;
  }();
  return dir;
}

inline std::string write_input(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace imram::fuzz
