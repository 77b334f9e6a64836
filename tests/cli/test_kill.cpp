// `kill -9` at random points of the commands that save (training, export, index build and add),
// rounds until three kills each have landed inside a run: whatever instant the kill lands on, the
// previous good state is intact and loadable, and the next run completes and leaves no temporary
// behind. The kill instants are drawn from a fixed seed over the span a whole run took.
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

// Rounds of `round(instant)` (which runs and kills, true when the kill cut the run short) at
// instants drawn from `seed` over (5 %, 95 %) of a timed run, until `landed` kills have cut a run
// short, at most 4 × `landed` rounds. A machine busier or idler than when the run was timed
// changes how many rounds that takes, not what is checked; the caller asserts the count.
template <typename Round>
int kill_rounds(double run_seconds, int landed, std::uint64_t seed, Round round) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> fraction(0.05, 0.95);
  int cut_short = 0;
  for (int done = 0; cut_short < landed && done < 4 * landed; ++done) cut_short += round(fraction(rng) * run_seconds);
  return cut_short;
}

constexpr int kLanded = 3;  // kills inside a run, per command

std::string tiny_training(const std::string& data) {
  // 100 captions in batches of 50: two steps an epoch, so most of a run is its saves (`last`
  // and `best` each epoch) and validations.
  return "--threads 1 train --data " + data +
         " --mode text --steps 1 --embed-size 16 --word-dim 8 --batch-size 50 --val-images 10 --log-every 1 --quiet";
}

TEST(KillDuringSave, TrainingKeepsLoadableStatesAndResumesToTheSameEnd) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 20, 10, 10, 6, 16);
  ASSERT_EQ(
      imram_cli(tiny_training(dir.file("data")) + " --epochs 20 --out " + dir.file("base") + " --max-steps 2").status,
      0);
  const auto resume_to_end = [&](const std::string& run) { return "--threads 1 train --resume " + run + " --quiet"; };
  fs::copy(dir.file("base"), dir.file("reference"), fs::copy_options::recursive);
  const double run_seconds = time_run(resume_to_end(dir.file("reference")));
  const auto reference = nlohmann::json::parse(std::ifstream(dir.file("reference/last/training.json")));

  int round = 0;
  const int cut_short = kill_rounds(run_seconds, kLanded, 7, [&](double instant) {
    SCOPED_TRACE("round " + std::to_string(round) + ", killed after " + std::to_string(instant) + " s");
    const auto run = dir.file("run" + std::to_string(round++));
    fs::copy(dir.file("base"), run, fs::copy_options::recursive);
    const bool landed = run_and_kill(resume_to_end(run), instant);

    const auto state = nlohmann::json::parse(std::ifstream(run + "/last/training.json"));
    const std::int64_t step = state["position"]["global_step"];
    EXPECT_GE(step, 2);
    EXPECT_LE(step, 40);
    EXPECT_NO_THROW(imram::load_model(run + "/last"));
    EXPECT_NO_THROW(imram::load_model(run + "/best"));
    EXPECT_TRUE(fs::is_regular_file(run + "/last/optimizer.pt"));

    const auto resumed = imram_cli(resume_to_end(run));
    EXPECT_EQ(resumed.status, 0) << resumed.output;
    const auto end = nlohmann::json::parse(std::ifstream(run + "/last/training.json"));
    EXPECT_EQ(end["position"], reference["position"]);
    EXPECT_TRUE(temporaries_below(run).empty()) << temporaries_below(run).front();
    // The log reads as one run: every line whole, each step logged once, in order.
    std::ifstream log(run + "/metrics.jsonl");
    std::int64_t last_train_step = 0;
    for (std::string line; std::getline(log, line);) {
      const auto entry = nlohmann::json::parse(line, nullptr, false);
      EXPECT_TRUE(entry.is_object()) << line;
      if (entry.is_object() && entry["type"] == "train") {
        EXPECT_EQ(entry["step"].get<std::int64_t>(), last_train_step + 1) << line;
        last_train_step = entry["step"];
      }
    }
    EXPECT_EQ(last_train_step, reference["position"]["global_step"].get<std::int64_t>());
    return landed;
  });
  EXPECT_GE(cut_short, kLanded) << "kills must land inside the run";
}

TEST(KillDuringSave, ExportKeepsThePreviousExportWhole) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 20, 10, 10, 6, 16);
  ASSERT_EQ(imram_cli(tiny_training(dir.file("data")) + " --epochs 1 --out " + dir.file("run")).status, 0);
  const auto export_command = "--threads 1 export " + dir.file("run/best") + " --out " + dir.file("ref");
  const double run_seconds = time_run(export_command);
  const auto original = imram::load_model(dir.file("run/best"));
  const int cut_short = kill_rounds(run_seconds, kLanded, 11, [&](double instant) {
    SCOPED_TRACE("killed after " + std::to_string(instant) + " s");
    const bool landed = run_and_kill(export_command, instant);
    // The export read back (an export exists from the timed run): whole, and the model it came from.
    fs::remove_all(dir.file("back"));
    const auto imported = imram_cli("--threads 1 import " + dir.file("ref") + " --out " + dir.file("back"));
    EXPECT_EQ(imported.status, 0) << imported.output;
    if (imported.status != 0) return landed;
    const auto back = imram::load_model(dir.file("back")).net->named_parameters();
    for (const auto& item : original.net->named_parameters())
      EXPECT_TRUE(back.contains(item.key()) && torch::equal(back[item.key()], item.value())) << item.key();
    return landed;
  });
  ASSERT_EQ(imram_cli(export_command).status, 0);
  EXPECT_TRUE(temporaries_below(dir.path()).empty()) << temporaries_below(dir.path()).front();
  EXPECT_GE(cut_short, kLanded);
}

TEST(KillDuringSave, IndexBuildAndAddLeaveAVerifiedIndex) {
  imram::test::TempDir dir;
  // Splits large enough that encoding and writing the store, not start-up, fill most of a run.
  imram::test::write_small_world(dir.file("data"), 20, 1000, 2000, 6, 16);
  ASSERT_EQ(imram_cli(tiny_training(dir.file("data")) + " --epochs 1 --out " + dir.file("run")).status, 0);
  const auto model = dir.file("run/best");
  const auto build = "--threads 1 index build --model " + model + " --data " + dir.file("data") +
                     " --split test --quiet --out " + dir.file("index");
  const auto add =
      "--threads 1 index add " + dir.file("index") + " --data " + dir.file("data") + " --split dev --quiet";
  const double build_seconds = time_run(build);
  const int build_cut_short = kill_rounds(build_seconds, kLanded, 13, [&](double instant) {
    SCOPED_TRACE("build killed after " + std::to_string(instant) + " s");
    const bool landed = run_and_kill(build, instant);
    const auto index = imram::GalleryIndex::open(dir.file("index"));
    EXPECT_NO_THROW(index->verify());
    EXPECT_EQ(index->num_images(), 2000);
    return landed;
  });
  EXPECT_GE(build_cut_short, kLanded);
  const double add_seconds = time_run(add);
  ASSERT_EQ(imram_cli(build).status, 0);
  // What a kill mid-add leaves after the committed bytes, deterministically: a torn info line.
  std::ofstream(dir.file("index/gallery_images.jsonl"), std::ios::app) << R"({"description": "large re)";
  const auto torn = imram::GalleryIndex::open(dir.file("index"));
  EXPECT_TRUE(torn->described());
  EXPECT_FALSE(torn->image_info(1999).description.empty());
  const int add_cut_short = kill_rounds(add_seconds, kLanded, 17, [&](double instant) {
    SCOPED_TRACE("add killed after " + std::to_string(instant) + " s");
    const auto before = imram::GalleryIndex::open(dir.file("index"))->num_images();
    const bool landed = run_and_kill(add, instant);
    const auto index = imram::GalleryIndex::open(dir.file("index"));
    EXPECT_NO_THROW(index->verify());
    // All of the addition or none of it.
    EXPECT_TRUE(index->num_images() == before || index->num_images() == before + 1000) << index->num_images();
    EXPECT_EQ(index->num_captions(), 5 * index->num_images());
    // An index that holds the dev split refuses it again: the next round starts without it.
    if (index->num_images() != before) {
      EXPECT_EQ(imram_cli(build).status, 0);
    }
    return landed;
  });
  EXPECT_GE(add_cut_short, kLanded);
  ASSERT_EQ(imram_cli(build).status, 0);
  ASSERT_EQ(imram_cli(add).status, 0);
  const auto index = imram::GalleryIndex::open(dir.file("index"));
  EXPECT_NO_THROW(index->verify());
  EXPECT_EQ(index->num_images(), 3000);
  EXPECT_TRUE(temporaries_below(dir.path()).empty()) << temporaries_below(dir.path()).front();
}

}  // namespace
