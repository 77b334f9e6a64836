// `kill -9` at random points of the commands that save (training, export, index build and add),
// several rounds each: whatever instant the kill lands on, the previous good state is intact and
// loadable, and the next run completes and leaves no temporary behind. The kill instants are
// drawn from a fixed seed over the span a whole run takes on this machine.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <vector>

#include "cli/cli_runner.h"
#include "imram/model/model_dir.h"
#include "imram/search/index_dir.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using imram::test::imram_cli;

// Seconds a whole run of `arguments` takes, which must succeed.
double time_run(const std::string& arguments) {
  const auto start = Clock::now();
  const auto result = imram_cli(arguments);
  EXPECT_EQ(result.status, 0) << result.output;
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Runs `arguments` (whitespace-separated, its output discarded) and kills it with SIGKILL after
// `seconds`, unless it ended first. True when the kill cut the run short.
bool run_and_kill(const std::string& arguments, double seconds) {
  std::vector<std::string> argv{IMRAM_BINARY};
  std::istringstream split(arguments);
  for (std::string word; split >> word;) argv.push_back(word);
  imram::test::Process run(argv, {imram::test::SpawnOptions::Output::Discard});
  if (run.wait_for(seconds)) return false;
  run.kill(SIGKILL);
  return run.wait_for(-1) == 128 + SIGKILL;
}

std::vector<std::string> temporaries_below(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) found.push_back(entry.path().string());
  return found;
}

// Kill instants spread over (5 %, 95 %) of a run's duration.
std::vector<double> kill_instants(double run_seconds, int rounds, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> fraction(0.05, 0.95);
  std::vector<double> instants;
  for (int round = 0; round < rounds; ++round) instants.push_back(fraction(rng) * run_seconds);
  return instants;
}

constexpr int kRounds = 6;

std::string tiny_training(const std::string& data) {
  // 100 captions in batches of 50: two steps an epoch, so most of a run is its saves (`last`
  // and `best` each epoch) and validations.
  return "--threads 1 train --data " + data +
         " --mode text --steps 1 --embed-size 16 --word-dim 8 --batch-size 50 --val-images 10 --log-every 1 --quiet";
}

TEST(KillDuringSave, TrainingKeepsLoadableStatesAndResumesToTheSameEnd) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 20, 10, 10, 6, 16);
  ASSERT_EQ(imram_cli(tiny_training(dir.file("data")) + " --epochs 20 --out " + dir.file("base") + " --max-steps 2").status, 0);
  const auto resume_to_end = [&](const std::string& run) { return "--threads 1 train --resume " + run + " --quiet"; };
  fs::copy(dir.file("base"), dir.file("reference"), fs::copy_options::recursive);
  const double run_seconds = time_run(resume_to_end(dir.file("reference")));
  const auto reference = nlohmann::json::parse(std::ifstream(dir.file("reference/last/training.json")));

  int cut_short = 0;
  const auto instants = kill_instants(run_seconds, kRounds, 7);
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + ", killed after " + std::to_string(instants[round]) + " s");
    const auto run = dir.file("run" + std::to_string(round));
    fs::copy(dir.file("base"), run, fs::copy_options::recursive);
    cut_short += run_and_kill(resume_to_end(run), instants[round]);

    const auto state = nlohmann::json::parse(std::ifstream(run + "/last/training.json"));
    const std::int64_t step = state["position"]["global_step"];
    EXPECT_GE(step, 2);
    EXPECT_LE(step, 40);
    EXPECT_NO_THROW(imram::load_model(run + "/last"));
    EXPECT_NO_THROW(imram::load_model(run + "/best"));
    EXPECT_TRUE(fs::is_regular_file(run + "/last/optimizer.pt"));

    const auto resumed = imram_cli(resume_to_end(run));
    ASSERT_EQ(resumed.status, 0) << resumed.output;
    const auto end = nlohmann::json::parse(std::ifstream(run + "/last/training.json"));
    EXPECT_EQ(end["position"], reference["position"]);
    EXPECT_TRUE(temporaries_below(run).empty()) << temporaries_below(run).front();
    // The log reads as one run: every line whole, each step logged once, in order.
    std::ifstream log(run + "/metrics.jsonl");
    std::int64_t last_train_step = 0;
    for (std::string line; std::getline(log, line);) {
      const auto entry = nlohmann::json::parse(line, nullptr, false);
      ASSERT_TRUE(entry.is_object()) << line;
      if (entry["type"] == "train") {
        EXPECT_EQ(entry["step"].get<std::int64_t>(), last_train_step + 1) << line;
        last_train_step = entry["step"];
      }
    }
    EXPECT_EQ(last_train_step, reference["position"]["global_step"].get<std::int64_t>());
  }
  EXPECT_GE(cut_short, kRounds / 2) << "most kills must land inside the run";
}

TEST(KillDuringSave, ExportKeepsThePreviousExportWhole) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 20, 10, 10, 6, 16);
  ASSERT_EQ(imram_cli(tiny_training(dir.file("data")) + " --epochs 1 --out " + dir.file("run")).status, 0);
  const auto export_command = "--threads 1 export " + dir.file("run/best") + " --out " + dir.file("ref");
  const double run_seconds = time_run(export_command);
  int cut_short = 0;
  for (const double instant : kill_instants(run_seconds, kRounds, 11)) {
    SCOPED_TRACE("killed after " + std::to_string(instant) + " s");
    cut_short += run_and_kill(export_command, instant);
    // The export read back: import it and compare with the model it came from.
    const auto imported = imram_cli("--threads 1 import " + dir.file("ref") + " --out " + dir.file("back"));
    EXPECT_EQ(imported.status, 0) << imported.output;
  }
  ASSERT_EQ(imram_cli(export_command).status, 0);
  EXPECT_TRUE(temporaries_below(dir.path()).empty()) << temporaries_below(dir.path()).front();
  EXPECT_GE(cut_short, kRounds / 2);
}

TEST(KillDuringSave, IndexBuildAndAddLeaveAVerifiedIndex) {
  imram::test::TempDir dir;
  // Splits large enough that encoding and writing the store, not start-up, fill most of a run.
  imram::test::write_small_world(dir.file("data"), 20, 1000, 2000, 6, 16);
  ASSERT_EQ(imram_cli(tiny_training(dir.file("data")) + " --epochs 1 --out " + dir.file("run")).status, 0);
  const auto model = dir.file("run/best");
  const auto build = "--threads 1 index build --model " + model + " --data " + dir.file("data") +
                     " --split test --quiet --out " + dir.file("index");
  const auto add = "--threads 1 index add " + dir.file("index") + " --data " + dir.file("data") + " --split dev --quiet";
  const double build_seconds = time_run(build);
  int cut_short = 0;
  for (const double instant : kill_instants(build_seconds, kRounds, 13)) {
    SCOPED_TRACE("build killed after " + std::to_string(instant) + " s");
    cut_short += run_and_kill(build, instant);
    const auto index = imram::GalleryIndex::open(dir.file("index"));
    EXPECT_NO_THROW(index->verify());
    EXPECT_EQ(index->num_images(), 2000);
  }
  const double add_seconds = time_run(add);
  ASSERT_EQ(imram_cli(build).status, 0);
  // What a kill mid-add leaves after the committed bytes, deterministically: a torn info line.
  std::ofstream(dir.file("index/gallery_images.jsonl"), std::ios::app) << R"({"description": "large re)";
  const auto torn = imram::GalleryIndex::open(dir.file("index"));
  EXPECT_TRUE(torn->described());
  EXPECT_FALSE(torn->image_info(1999).description.empty());
  for (const double instant : kill_instants(add_seconds, kRounds, 17)) {
    SCOPED_TRACE("add killed after " + std::to_string(instant) + " s");
    const auto before = imram::GalleryIndex::open(dir.file("index"))->num_images();
    cut_short += run_and_kill(add, instant);
    const auto index = imram::GalleryIndex::open(dir.file("index"));
    EXPECT_NO_THROW(index->verify());
    // All of the addition or none of it.
    EXPECT_TRUE(index->num_images() == before || index->num_images() == before + 1000) << index->num_images();
    EXPECT_EQ(index->num_captions(), 5 * index->num_images());
    // An index that holds the dev split refuses it again: the next round starts without it.
    if (index->num_images() != before) {
      ASSERT_EQ(imram_cli(build).status, 0);
    }
  }
  ASSERT_EQ(imram_cli(build).status, 0);
  ASSERT_EQ(imram_cli(add).status, 0);
  const auto index = imram::GalleryIndex::open(dir.file("index"));
  EXPECT_NO_THROW(index->verify());
  EXPECT_EQ(index->num_images(), 3000);
  EXPECT_TRUE(temporaries_below(dir.path()).empty()) << temporaries_below(dir.path()).front();
  EXPECT_GE(cut_short, kRounds);
}

}  // namespace
