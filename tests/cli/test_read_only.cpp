// Every command that writes, pointed at a read-only file system (a tmpfs remounted read-only:
// root ignores permission bits): a clear one-line error naming the path and exit status 1, with
// what was there before untouched; or, for the gallery cache, a warning and a correct answer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli_runner.h"
#include "cli/tmpfs.h"
#include "imram/model/model_dir.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using imram::test::CommandResult;
using imram::test::imram_cli;

std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) {
      std::ifstream in(entry.path(), std::ios::binary);
      files[entry.path().string()] = std::string(std::istreambuf_iterator<char>(in), {});
    }
  return files;
}

void expect_refused(const CommandResult& result, const std::string& path) {
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_EQ(result.output.rfind("imram: error: ", 0), 0u) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
  EXPECT_NE(result.output.find(path), std::string::npos) << result.output;
}

TEST(ReadOnly, WritersFailCleanlyAndReadersStillWork) {
  imram::test::TempDir dir;
  imram::test::Tmpfs disk(dir.file("ro"), 64 << 20);
  if (!disk.mounted()) GTEST_SKIP() << "mounting a tmpfs is not permitted here";
  const auto ro = dir.file("ro");
  imram::test::write_small_world(ro + "/data", 20, 10, 10, 6, 16);
  const auto train = "--threads 1 train --data " + ro +
                     "/data --mode text --steps 1 --embed-size 16 --word-dim 8"
                     " --batch-size 50 --val-images 10 --epochs 2 --quiet";
  ASSERT_EQ(imram_cli(train + " --out " + ro + "/run --max-steps 2").status, 0);
  const auto model = ro + "/run/best";
  const auto search = "--threads 1 search --model " + model + " --data " + ro + "/data --query red --top 3 --json";
  const auto answer = imram_cli(search + " --cache " + ro + "/cache");
  ASSERT_EQ(answer.status, 0) << answer.output;
  ASSERT_TRUE(disk.make_read_only());
  const auto before = snapshot(ro);

  expect_refused(imram_cli("--threads 1 train --resume " + ro + "/run --quiet"), ro + "/run");
  expect_refused(imram_cli(train + " --out " + ro + "/another"), ro + "/another");
  expect_refused(imram_cli("--threads 1 export " + model + " --out " + ro + "/exported"), ro + "/exported");
  expect_refused(imram_cli("--threads 1 index build --model " + model + " --data " + ro +
                           "/data --split test --quiet --out " + ro + "/index"),
                 ro + "/index");
  expect_refused(imram_cli("synth --out " + ro + "/more --train 10 --dev 4 --test 4 --regions 6 --feat-dim 8"),
                 ro + "/more");
  expect_refused(imram_cli("vocab build --data " + ro + "/data --out " + ro + "/vocab2.json"), ro + "/vocab2.json");
  expect_refused(imram_cli("--threads 1 train-global --model " + model + " --data " + ro +
                           "/data --epochs 1 --quiet --out " + ro + "/global"),
                 ro + "/global");

  // Readers: the cached gallery is reused as it is, and a new one is made in memory.
  const auto cached = imram_cli(search + " --cache " + ro + "/cache");
  EXPECT_EQ(cached.status, 0) << cached.output;
  EXPECT_EQ(cached.output.find("warning"), std::string::npos) << cached.output;
  const auto uncached = imram_cli(search + " --cache " + ro + "/cache2");
  EXPECT_EQ(uncached.status, 0) << uncached.output;
  EXPECT_NE(uncached.output.find("imram: warning: gallery cache not written"), std::string::npos) << uncached.output;
  const auto results = [](const std::string& output) {
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);)
      if (!line.empty() && line.front() == '{') return nlohmann::json::parse(line)["results"].dump();
    return output;
  };
  EXPECT_EQ(results(cached.output), results(answer.output));
  EXPECT_EQ(results(uncached.output), results(answer.output));
  EXPECT_EQ(snapshot(ro), before);
}

}  // namespace
