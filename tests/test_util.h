#pragma once
// Small helpers shared by the tests.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "imram/data/npy.h"
#include "imram/data/synthetic.h"
#include "imram/error.h"
#include "imram/util/atomic_file.h"
#include "test_paths.h"

namespace imram::test {

// A whole .npy file as numbers (integer ids only for the second: a float array is an error).
inline std::vector<double> read_npy_as_double(const std::string& path) { return to_double(NpyArray::open(path)); }
inline std::vector<std::int64_t> read_npy_as_int64(const std::string& path) { return to_int64(NpyArray::open(path)); }

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("imram_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)))
                .string();
    remove_tree(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { remove_tree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The message of the imram::Error that `action` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A whole file as bytes ("" when it cannot be read), and bytes written over a file.
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

inline std::string testdata(const std::string& relative) { return std::string(IMRAM_TESTDATA_DIR) + "/" + relative; }

// A small synthetic dataset (standard layout + vocab.json) in `dir`.
inline void write_small_world(const std::string& dir, std::int64_t train, std::int64_t dev, std::int64_t test,
                              std::int64_t regions, std::int64_t feature_dim, std::uint64_t seed = 1) {
  SyntheticOptions options;
  options.seed = seed;
  options.train = train;
  options.dev = dev;
  options.test = test;
  options.regions = regions;
  options.feature_dim = feature_dim;
  write_synthetic_dataset(dir, options);
}

}  // namespace imram::test
