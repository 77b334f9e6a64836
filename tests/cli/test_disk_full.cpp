// A full disk during every writer of a training run and of the gallery cache, on a small tmpfs
// (needs root, or CAP_SYS_ADMIN; skipped where mounting is not permitted). Each case asserts a
// clear one-line error and a non-zero exit, or success, and in both cases a complete, resumable
// previous state with no temporary left beside it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/cli_runner.h"
#include "cli/tmpfs.h"
#include "imram/error.h"
#include "imram/model/model_dir.h"
#include "imram/util/atomic_file.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using imram::test::imram_cli;
using imram::test::Tmpfs;

std::string train_arguments(const std::string& data, const std::string& out, int epochs = 3) {
  return "--threads 1 train --data " + data + " --out " + out +
         " --mode text --steps 1 --embed-size 16 --word-dim 8 --epochs " + std::to_string(epochs) +
         " --batch-size 10 --val-images 20 --log-every 1 --quiet";
}

std::size_t tree_size(const std::string& dir) {
  std::size_t bytes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) bytes += (entry.file_size() + 4095) / 4096 * 4096;
  return bytes;
}

void expect_no_temporaries(const std::string& dir) {
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos) << entry.path();
}

TEST(DiskFull, EveryTrainingWriterFailsCleanlyAndKeepsTheLastGoodState) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 40, 20, 20, 6, 16);
  // A run stopped at step 3: `last` and `best` exist; resuming to step 6 rewrites
  // metrics.jsonl, best (weights, config, vocabulary) and last (+ optimizer.pt, training.json).
  const auto first = imram_cli(train_arguments(dir.file("data"), dir.file("run")) + " --max-steps 3");
  ASSERT_EQ(first.status, 0) << first.output;
  const std::size_t run_bytes = tree_size(dir.file("run"));

  Tmpfs probe(dir.file("probe"), 1 << 20);
  if (!probe.mounted()) GTEST_SKIP() << "mounting a tmpfs is not permitted here";

  int failures = 0, successes = 0;
  // From a full disk to room for one and a half runs' worth of new files.
  for (const int eighth : {0, 1, 2, 3, 4, 6, 8, 12}) {
    SCOPED_TRACE("free eighths of a run: " + std::to_string(eighth));
    const auto mount_point = dir.file("disk" + std::to_string(eighth));
    Tmpfs disk(mount_point, 4 * run_bytes + (1 << 20));
    ASSERT_TRUE(disk.mounted());
    fs::copy(dir.file("run"), mount_point + "/run", fs::copy_options::recursive);
    disk.fill_leaving(run_bytes * std::size_t(eighth) / 8);
    const auto result = imram_cli("--threads 1 train --resume " + mount_point + "/run --max-steps 6 --quiet");
    if (result.status == 0) {
      ++successes;
    } else {
      ++failures;
      EXPECT_EQ(result.status, 1) << result.output;
      EXPECT_EQ(result.output.rfind("imram: error: ", 0), 0u) << result.output;
      EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
      EXPECT_NE(result.output.find(mount_point), std::string::npos) << result.output;
    }
    expect_no_temporaries(mount_point + "/run");
    disk.unfill();
    // Whatever happened, `last` is complete: training.json parses and the run resumes.
    const auto state = nlohmann::json::parse(std::ifstream(mount_point + "/run/last/training.json"));
    const int step = state["position"]["global_step"];
    EXPECT_TRUE(step == 3 || step == 6) << step;
    EXPECT_NO_THROW(imram::load_model(mount_point + "/run/best"));
    const auto resumed = imram_cli("--threads 1 train --resume " + mount_point + "/run --max-steps 9 --quiet");
    EXPECT_EQ(resumed.status, 0) << resumed.output;
  }
  EXPECT_GE(failures, 4) << "the fill levels did not reach the writers";
  EXPECT_GT(successes, 0);
}

// The log is appended to, not swapped in: /dev/full makes that one writer fail (ENOSPC), which a
// fill level cannot aim at (its last page usually has room for one more line).
TEST(DiskFull, AFailedMetricsLineStopsTheRunBeforeItSavesAnything) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 40, 20, 20, 6, 16);
  const auto first = imram_cli(train_arguments(dir.file("data"), dir.file("run")) + " --max-steps 3");
  ASSERT_EQ(first.status, 0) << first.output;
  const auto training_json = [&] {
    std::ifstream in(dir.file("run/last/training.json"));
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const auto before = training_json();
  fs::rename(dir.file("run/metrics.jsonl"), dir.file("metrics.saved"));
  fs::create_symlink("/dev/full", dir.file("run/metrics.jsonl"));
  const auto result = imram_cli("--threads 1 train --resume " + dir.file("run") + " --max-steps 6 --quiet");
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_EQ(result.output,
            "imram: error: " + dir.file("run/metrics.jsonl") + ": cannot append the log line (disk full?)\n");
  EXPECT_EQ(training_json(), before);
  expect_no_temporaries(dir.file("run"));
}

TEST(DiskFull, AtomicFileWriteOnAFullDiskThrowsAndLeavesNothing) {
  imram::test::TempDir dir;
  Tmpfs disk(dir.file("disk"), 16 << 10);
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs is not permitted here";
  const auto path = dir.file("disk/training.json");
  try {
    imram::write_file_atomically(path, [](std::ostream& out) { out << std::string(64 << 10, 'x'); });
    ADD_FAILURE() << "a write beyond the disk's size succeeded";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": write failed"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir.file("disk")));
}

TEST(DiskFull, GalleryCacheOnAFullDiskOnlyCostsSpeed) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 40, 20, 20, 6, 16);
  const auto trained = imram_cli(train_arguments(dir.file("data"), dir.file("run"), 1));
  ASSERT_EQ(trained.status, 0) << trained.output;
  Tmpfs disk(dir.file("disk"), 64 << 10);
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs is not permitted here";
  disk.fill_leaving(8 << 10);
  const auto search = "--threads 1 search --model " + dir.file("run/best") + " --data " + dir.file("data") +
                      " --query red --top 3 --cache " + dir.file("disk/cache");
  const auto result = imram_cli(search);
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("imram: warning: gallery cache not written"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("1. image"), std::string::npos) << result.output;
  expect_no_temporaries(dir.file("disk"));
  EXPECT_EQ(result.output.find("terminate called"), std::string::npos) << result.output;
}

}  // namespace
