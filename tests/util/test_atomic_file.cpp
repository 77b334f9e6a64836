// Atomic directory writes: the new content replaces the old one whole, and neither the old
// directory nor the temporary one is left beside it (remove_tree clears nested folders).
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "imram/error.h"
#include "imram/util/atomic_file.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

using imram::test::read_text;
using imram::test::write_text;
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

// A process id that no process holds any more: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

TEST(AtomicDirectory, RemovesTemporariesOfKilledWritersButNotOfLiveOnes) {
  imram::test::TempDir dir;
  const auto model = dir.file("model");
  const auto dead = model + ".tmp." + std::to_string(dead_pid());
  const auto live = model + ".tmp.1";  // init: always alive
  const auto dead_file = dir.file("config.json.tmp." + std::to_string(dead_pid()));
  for (const auto& stale : {dead, live}) {
    fs::create_directories(stale + "/weights");
    write_text(stale + "/weights/big.npy", "x");
  }
  write_text(dead_file, "half");
  write_text(dir.file("model.tmp.notes"), "a user's file");
  imram::write_directory_atomically(model, [](const std::string& tmp) { write_text(tmp + "/config.json", "1"); });
  EXPECT_FALSE(fs::exists(dead)) << "a dead writer's temporary directory was left";
  EXPECT_TRUE(fs::exists(live)) << "a live writer's temporary directory was removed";
  EXPECT_TRUE(fs::exists(dir.file("model.tmp.notes")));
  imram::write_file_atomically(dir.file("config.json"), [](std::ostream& out) { out << "{}"; });
  EXPECT_FALSE(fs::exists(dead_file));
}

TEST(OwnDirectory, RefusesToReplaceAnythingButItsOwnKind) {
  imram::test::TempDir dir;
  const std::vector<std::string> signature = {"config.json", "weights"};
  EXPECT_NO_THROW(imram::require_own_directory(dir.file("absent"), "model directory", signature));
  fs::create_directories(dir.file("empty"));
  EXPECT_NO_THROW(imram::require_own_directory(dir.file("empty"), "model directory", signature));
  fs::create_directories(dir.file("model/weights"));
  write_text(dir.file("model/config.json"), "{}");
  EXPECT_NO_THROW(imram::require_own_directory(dir.file("model"), "model directory", signature));

  fs::create_directories(dir.file("user/sub"));
  write_text(dir.file("user/notes.txt"), "x");
  write_text(dir.file("user/config.json"), "{}");  // a config alone is not a model
  write_text(dir.file("plain"), "x");
  for (const auto& path : {dir.file("user"), dir.file("plain")}) {
    try {
      imram::require_own_directory(path, "model directory", signature);
      ADD_FAILURE() << path << " would have been replaced";
    } catch (const imram::Error& e) {
      EXPECT_NE(std::string(e.what()).find(path + ": exists and is not a"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
