// Atomic directory writes: the new content replaces the old one whole, and neither the old
// directory nor the temporary one is left beside it (remove_tree clears nested folders).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "imram/util/atomic_file.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(AtomicDirectory, ReplacesTheOldContentAndLeavesNothingBeside) {
  imram::test::TempDir dir;
  const auto model = dir.file("model");
  imram::write_directory_atomically(model, [](const std::string& tmp) {
    fs::create_directories(tmp + "/weights/deep");
    write_text(tmp + "/weights/deep/old.txt", "old");
    write_text(tmp + "/config.json", "1");
  });
  imram::write_directory_atomically(model, [](const std::string& tmp) {
    fs::create_directories(tmp + "/weights");
    write_text(tmp + "/config.json", "2");
  });
  EXPECT_EQ(read_text(model + "/config.json"), "2");
  EXPECT_FALSE(fs::exists(model + "/weights/deep"));
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1) << "the swapped-out directory or a temporary one was left beside " << model;
}

TEST(AtomicDirectory, AFailedFillLeavesTheOldContentAndNoTemporary) {
  imram::test::TempDir dir;
  const auto model = dir.file("model");
  imram::write_directory_atomically(model, [](const std::string& tmp) { write_text(tmp + "/config.json", "1"); });
  EXPECT_THROW(imram::write_directory_atomically(model,
                                                 [](const std::string& tmp) {
                                                   fs::create_directories(tmp + "/weights");
                                                   write_text(tmp + "/weights/half.npy", "x");
                                                   throw std::runtime_error("killed");
                                                 }),
               std::runtime_error);
  EXPECT_EQ(read_text(model + "/config.json"), "1");
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST(RemoveTree, RemovesNestedFoldersAndIgnoresMissingPaths) {
  imram::test::TempDir dir;
  fs::create_directories(dir.file("a/b/c"));
  write_text(dir.file("a/b/c/f"), "x");
  write_text(dir.file("a/g"), "y");
  imram::remove_tree(dir.file("a"));
  EXPECT_FALSE(fs::exists(dir.file("a")));
  imram::remove_tree(dir.file("a"));
  EXPECT_TRUE(fs::exists(dir.path()));
}

}  // namespace
