// What a new user broke in one afternoon (issue "Hardening"), each case as the user met it on
// the command line: a clear one-line error and a non-zero exit, or a correct result, and never
// a user's file lost, a crash, or nonsense reported as success.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include <opencv2/core.hpp>

#include "cli/cli_runner.h"
#include "imram/data/npy.h"
#include "imram/data/precomp_dataset.h"
#include "imram/data/scene.h"
#include "imram/error.h"
#include "imram/image/picture.h"
#include "imram/image/render.h"
#include "imram/model/model_dir.h"
#include "imram/util/writer_lock.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using imram::test::CommandResult;
using imram::test::imram_cli;

using imram::test::read_text;
using imram::test::write_text;
void expect_error(const CommandResult& result, const std::string& mention) {
  EXPECT_NE(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("imram: error: "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find(mention), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("terminate called"), std::string::npos) << result.output;
}

// A generated dataset and a model trained on it for one epoch, as the D and M.
class Hardening : public ::testing::Test {
 protected:
  void SetUp() override {
    imram::test::write_small_world(data(), 40, 20, 20, 6, 16);
    const auto trained = imram_cli(train_arguments(data(), dir_.file("run")));
    ASSERT_EQ(trained.status, 0) << trained.output;
  }
  static std::string train_arguments(const std::string& data, const std::string& out, int epochs = 1) {
    return "--threads 1 train --data " + data + " --out " + out +
           " --mode text --steps 1 --embed-size 16 --word-dim 8 --epochs " + std::to_string(epochs) +
           " --batch-size 10 --val-images 20 --quiet";
  }
  std::string data() const { return dir_.file("data"); }
  std::string model() const { return dir_.file("run/best"); }
  std::string file(const std::string& name) const { return dir_.file(name); }

  imram::test::TempDir dir_;
};

// Defect 1: export and import replaced whatever --out named, a user's folder included.
TEST_F(Hardening, ExportAndImportReplaceOnlyTheirOwnKindOfDirectory) {
  const auto user = file("v");
  fs::create_directories(user + "/sub");
  write_text(user + "/notes.txt", "mine");
  expect_error(imram_cli("export " + model() + " --out " + user), user + ": exists and is not a");
  EXPECT_EQ(read_text(user + "/notes.txt"), "mine");
  EXPECT_TRUE(fs::is_directory(user + "/sub"));

  write_text(file("plain"), "mine");
  expect_error(imram_cli("export " + model() + " --out " + file("plain")), "not a directory");
  EXPECT_EQ(read_text(file("plain")), "mine");

  // Its own output it replaces, so export + import can be repeated.
  ASSERT_EQ(imram_cli("export " + model() + " --out " + file("ref")).status, 0);
  ASSERT_EQ(imram_cli("export " + model() + " --out " + file("ref")).status, 0);
  expect_error(imram_cli("import " + file("ref") + " --out " + user), user + ": exists and is not a");
  EXPECT_EQ(read_text(user + "/notes.txt"), "mine");
  const auto imported = imram_cli("import " + file("ref") + " --out " + file("model2"));
  ASSERT_EQ(imported.status, 0) << imported.output;
  ASSERT_EQ(imram_cli("import " + file("ref") + " --out " + file("model2")).status, 0);
  EXPECT_NO_THROW(imram::load_model(file("model2")));
}

// Defect 2: an all-NaN matrix gave R@1 = 100.
TEST(HardeningCli, MetricsRefuseNonFiniteScoresNamingTheFile) {
  imram::test::TempDir dir;
  imram::write_npy(dir.file("nan.npy"), {4, 20}, std::vector<double>(80, std::nan("")));
  expect_error(imram_cli("metrics --sims " + dir.file("nan.npy")), dir.file("nan.npy"));
  std::vector<double> one_inf(80, 0.25);
  one_inf[13] = std::numeric_limits<double>::infinity();
  imram::write_npy(dir.file("inf.npy"), {4, 20}, one_inf);
  expect_error(imram_cli("metrics --sims " + dir.file("inf.npy")), "caption 13");
}

// Defect 2: a loss that turned NaN was trained on, validated as rsum 600 and saved as `best`.
// Weights at 3e38 (finite, so they load) overflow the first forward pass: NaN at step 1.
TEST_F(Hardening, DivergingTrainingStopsAtTheStepAndSavesNothing) {
  fs::copy(model(), file("huge"), fs::copy_options::recursive);
  const auto weight = file("huge/weights/img_enc.fc_local.weight.npy");
  const auto shape = imram::NpyArray::open(weight).shape();
  imram::write_npy(weight, shape, std::vector<float>(std::size_t(shape[0] * shape[1]), 3e38f));
  const auto result = imram_cli("--threads 1 train --data " + data() + " --out " + file("nan_run") + " --init-from " +
                                file("huge") + " --epochs 1 --batch-size 10 --quiet");
  expect_error(result, "training diverged at step 1 ");
  EXPECT_FALSE(fs::exists(file("nan_run/best"))) << "a diverged model was saved as best";
  EXPECT_FALSE(fs::exists(file("nan_run/last")));
  // Learning rates LibTorch cannot even represent are refused up front, by name.
  expect_error(imram_cli(train_arguments(data(), file("lr_run")) + " --lr 1e38"), "--lr must be in (0, 1]");
}

// Defect 9: --resume ignored --lr, --batch-size and --out, and trained one step per resume.
TEST_F(Hardening, ResumeHonoursMaxStepsAndRefusesOptionsItCannotApply) {
  auto result = imram_cli("--threads 1 train --resume " + file("run") + " --lr 0.5");
  expect_error(result, "--lr");
  result = imram_cli("--threads 1 train --resume " + file("run") + " --batch-size 4");
  expect_error(result, "--batch-size");
  result = imram_cli("--threads 1 train --resume " + file("run") + " --out " + file("elsewhere"));
  expect_error(result, "--out");

  // 200 captions / 10 = 20 steps an epoch.
  ASSERT_EQ(imram_cli(train_arguments(data(), file("steps"), 3) + " --max-steps 5").status, 0);
  const auto step_of = [&] {
    return nlohmann::json::parse(read_text(file("steps/last/training.json")))["position"]["global_step"].get<int>();
  };
  EXPECT_EQ(step_of(), 5);
  result = imram_cli("--threads 1 train --resume " + file("steps") + " --max-steps 12 --quiet");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(step_of(), 12);
  expect_error(imram_cli("--threads 1 train --resume " + file("steps") + " --max-steps 12 --quiet"),
               "would train nothing");
  // Without a new limit, a run that stopped at its limit goes on to its epochs.
  result = imram_cli("--threads 1 train --resume " + file("steps") + " --quiet");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(step_of(), 60);
}

// Defect 13: a relative --data was stored as typed, so --resume from elsewhere failed.
TEST_F(Hardening, ResumeWorksFromAnotherDirectoryAfterARelativeData) {
  const auto result = imram_cli(train_arguments("data", "rel") + " --max-steps 3", "cd " + dir_.path() + " &&");
  ASSERT_EQ(result.status, 0) << result.output;
  const auto state = nlohmann::json::parse(read_text(file("rel/last/training.json")));
  EXPECT_TRUE(fs::path(state["options"]["data_dir"].get<std::string>()).is_absolute());
  const auto resumed = imram_cli("--threads 1 train --resume " + file("rel") + " --max-steps 5 --quiet", "cd / &&");
  EXPECT_EQ(resumed.status, 0) << resumed.output;
}

// Defect 5: non-UTF-8 captions failed in some commands with a raw json type_error.
TEST_F(Hardening, InvalidUtf8CaptionsAreReadTheSameWayByEveryCommand) {
  auto captions = read_text(data() + "/test_caps.txt");
  const auto line3 = captions.find('\n', captions.find('\n', captions.find('\n') + 1) + 1);
  captions.insert(line3, " caf\xe9");
  write_text(data() + "/test_caps.txt", captions);
  auto train_captions = read_text(data() + "/train_caps.txt");
  write_text(data() + "/train_caps.txt",
             "a red caf\xe9 \xff\xfe\n" + train_captions.substr(train_captions.find('\n') + 1));

  auto result = imram_cli("--threads 1 search --json --model " + model() + " --data " + data() +
                          " --image 0 --top 20 --cache ''");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("test_caps.txt:3: 1 caption line(s) are not valid UTF-8"), std::string::npos)
      << result.output;
  const auto json_line = result.output.substr(result.output.find("{\""));
  EXPECT_NO_THROW(nlohmann::json::parse(json_line)) << json_line;

  result = imram_cli("vocab build --data " + data() + " --out " + file("vocab.json"));
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("train_caps.txt:1:"), std::string::npos) << result.output;
  result = imram_cli(train_arguments(data(), file("utf8_run")));
  EXPECT_EQ(result.status, 0) << result.output;
  result = imram_cli("--threads 1 eval --model " + model() + " --data " + data() + " --split test");
  EXPECT_EQ(result.status, 0) << result.output;
}

// Defect 7: a scenes file shorter than its split was read out of bounds.
TEST_F(Hardening, ScenesFileShorterThanTheSplitIsAnError) {
  const auto scenes = data() + "/test_scenes.jsonl";
  auto text = read_text(scenes);
  std::size_t cut = 0;
  for (int line = 0; line < 10; ++line) cut = text.find('\n', cut) + 1;
  write_text(scenes, text.substr(0, cut));
  expect_error(
      imram_cli("--threads 1 search --model " + model() + " --data " + data() + " --query red --top 20 --cache ''"),
      "describes 10 images, the split has 20");
  expect_error(imram_cli("--threads 1 search --model " + model() + " --data " + data() + " --image 15 --cache ''"),
               "test_scenes.jsonl");
}

// Defect 8: missing config keys took defaults; 4294967297 read as 1.
TEST_F(Hardening, ModelConfigKeysAreRequiredAndIntegersRangeChecked) {
  const auto config_path = model() + "/config.json";
  const auto config = nlohmann::json::parse(read_text(config_path));
  for (const char* key : {"mode", "iteration_steps", "embed_size", "bi_gru"}) {
    auto edited = config;
    edited.erase(key);
    write_text(config_path, edited.dump());
    expect_error(imram_cli("export " + model() + " --out " + file("r")), std::string("missing config key \"") + key);
  }
  auto edited = config;
  edited["iteration_steps"] = 4294967297ull;
  write_text(config_path, edited.dump());
  expect_error(imram_cli("export " + model() + " --out " + file("r")), "iteration_steps");
  edited = config;
  edited["embed_size"] = 18446744073709551615ull;
  write_text(config_path, edited.dump());
  expect_error(imram_cli("export " + model() + " --out " + file("r")), "embed_size");
}

// Defect 12: a corrupt gallery cache was trusted.
TEST_F(Hardening, CorruptGalleryCacheIsDetectedAndRebuilt) {
  const auto search = "--threads 1 search --json --model " + model() + " --data " + data() +
                      " --query 'a red circle' --top 20 --cache " + file("cache");
  // The answer without its timings, which differ from run to run.
  auto results = [](const std::string& output) {
    return nlohmann::json::parse(output.substr(output.find("{\""))).at("results").dump();
  };
  const auto first = imram_cli(search);
  ASSERT_EQ(first.status, 0) << first.output;
  std::vector<fs::path> caches;
  for (const auto& entry : fs::directory_iterator(file("cache"))) caches.push_back(entry.path());
  ASSERT_EQ(caches.size(), 1u);
  EXPECT_EQ(results(imram_cli(search).output), results(first.output));  // from the cache
  // The cache is an index directory; damage its store of encoded regions.
  const auto store = (caches[0] / "regions.bin").string();
  auto bytes = read_text(store);
  ASSERT_FALSE(bytes.empty());
  for (std::size_t i = bytes.size() / 2; i < bytes.size() / 2 + 4096 && i < bytes.size(); ++i) bytes[i] = 0;
  write_text(store, bytes);
  const auto after = imram_cli(search);
  ASSERT_EQ(after.status, 0) << after.output;
  EXPECT_NE(after.output.find("checksum mismatch"), std::string::npos) << after.output;
  EXPECT_EQ(results(after.output), results(first.output));
  const auto again = imram_cli(search);
  EXPECT_EQ(again.output.find("checksum mismatch"), std::string::npos) << "the rebuilt cache was not written back";
  EXPECT_EQ(results(again.output), results(first.output));
}

// Defects 10 and 11, and the usage-error convention.
TEST(HardeningCli, SizesAndThreadCountsAreBounded) {
  imram::test::TempDir dir;
  expect_error(imram_cli("synth --out " + dir.file("d") + " --train 100000000000"), "at most");
  expect_error(imram_cli("synth --out " + dir.file("d") + " --regions 8 --feat-dim 100000000"), "at most");
  for (const char* threads : {"-1", "100000"}) {
    const auto result = imram_cli(std::string("--threads ") + threads + " doctor");
    expect_error(result, "--threads");
    EXPECT_EQ(result.status, 2) << result.output;
  }
  for (const char* bad : {"--memory-budget -1", "--memory-budget 0"}) {
    const auto result = imram_cli(std::string("eval --model m --data d ") + bad);
    expect_error(result, "--memory-budget");
    EXPECT_EQ(result.status, 2) << result.output;
  }
  expect_error(imram_cli("train --data d --out o --margin -5"), "--margin");
}

TEST(HardeningCli, UsageErrorsFollowTheDocumentedConvention) {
  auto result = imram_cli("train --no-such-option");
  EXPECT_EQ(result.status, 2) << result.output;
  EXPECT_EQ(result.output.rfind("imram: error: ", 0), 0u) << result.output;
  result = imram_cli("no-such-command");
  EXPECT_EQ(result.status, 2) << result.output;
  EXPECT_EQ(result.output.rfind("imram: error: ", 0), 0u) << result.output;
  result = imram_cli("search --help");
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("--threads"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("--device"), std::string::npos) << result.output;
}

TEST_F(Hardening, QueryOfOnlyUnknownWordsSaysSo) {
  auto result =
      imram_cli("--threads 1 search --model " + model() + " --data " + data() + " --query 'zzyzx qwerty' --cache ''");
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("no word of the query is in the model's vocabulary"), std::string::npos)
      << result.output;
  result = imram_cli("--threads 1 search --model " + model() + " --data " + data() + " --query red --cache ''");
  EXPECT_EQ(result.output.find("vocabulary"), std::string::npos) << result.output;
}

TEST_F(Hardening, InterruptedTrainingExitsWithItsOwnCode) {
  // SIGINT arrives while the first epoch runs; the run saves `last` and exits 3.
  const auto result = imram_cli(train_arguments(data(), file("stop"), 50) +
                                    " --log-every 1 & pid=$!; "
                                    "for i in $(seq 600); do [ -e " +
                                    file("stop/metrics.jsonl") +
                                    " ] && break; sleep 0.05; done; "
                                    "kill -INT $pid; wait $pid; echo exit=$?; true",
                                "");
  EXPECT_NE(result.output.find("exit=3"), std::string::npos) << result.output;
  EXPECT_TRUE(fs::exists(file("stop/last/training.json")));
}

// Issue 21 ("Hardening, round 2").

// Item 1: explain read an image of 8 features a region as img_dim 16 ones: out of bounds.
TEST_F(Hardening, ExplainRefusesDataOfAnotherFeatureSize) {
  imram::test::write_small_world(file("narrow"), 2, 2, 20, 6, 8);
  for (const char* image : {"0", "19"}) {
    const auto result = imram_cli("--threads 1 explain --model " + model() + " --data " + file("narrow") + " --image " +
                                  image + " --caption 1");
    expect_error(result, file("narrow") + "/test_ims.npy: regions have 8 features but the model expects img_dim 16");
    EXPECT_EQ(result.status, 1) << result.output;
  }
}

// Item 11: option values and combinations.
TEST_F(Hardening, OptionErrorsSayTheBoundAndRefuseWhatWouldBeIgnored) {
  const auto shortlist = imram_cli("search --index i --query red --shortlist -5");
  expect_error(shortlist, "--shortlist");
  EXPECT_EQ(shortlist.status, 2) << shortlist.output;
  EXPECT_NE(shortlist.output.find("must be >= 0, got -5"), std::string::npos) << shortlist.output;
  EXPECT_LT(shortlist.output.size(), 200u) << shortlist.output;
  // --shortlist and --prefilter take a number or "auto"; nothing else gets through as the
  // automatic one.
  for (const char* option : {"--shortlist", "--prefilter"}) {
    for (const char* bad : {"-1", "many"}) {
      const auto refused = imram_cli(std::string("search --index i --query red ") + option + " " + bad);
      expect_error(refused, option);
      EXPECT_EQ(refused.status, 2) << refused.output;
    }
    const auto automatic = imram_cli("search --index " + file("missing") + " --query red " + option + " auto");
    EXPECT_EQ(automatic.status, 1) << automatic.output;  // parsed; then the index is missing
  }
  const auto split = imram_cli("eval --index i --split dev");
  expect_error(split, "--split");
  EXPECT_EQ(split.status, 2) << split.output;
}

// Item 11: a model directory given to import was read as the authors' layout.
TEST_F(Hardening, ImportOfAModelDirectorySaysWhatItIs) {
  expect_error(imram_cli("import " + model() + " --out " + file("again")),
               model() + ": is an imram model directory already");
  EXPECT_FALSE(fs::exists(file("again")));
}

// Item 11: the problem was said twice, once as a cache warning and again as the error.
TEST_F(Hardening, SearchOfDataOfAnotherSizeSaysTheProblemOnce) {
  imram::test::write_small_world(file("narrow"), 2, 2, 20, 6, 8);
  const auto result = imram_cli("--threads 1 search --model " + model() + " --data " + file("narrow") +
                                " --query red --cache " + file("cache"));
  expect_error(result, "regions have 8 features but the model expects img_dim 16");
  EXPECT_EQ(result.output.find("warning"), std::string::npos) << result.output;
}

// Item 6: --nproc 0 and -1 ran one process; 1,000 started 1,000 ranks.
TEST(HardeningCli, NprocIsBoundedAndPositive) {
  for (const char* nproc : {"0", "-1", "1000"}) {
    const auto result = imram_cli(std::string("train --data d --out o --nproc ") + nproc);
    expect_error(result, "--nproc");
    EXPECT_EQ(result.status, 2) << result.output;
  }
  EXPECT_NE(imram_cli("train --data d --out o --nproc 1000").output.find("--nproc-max"), std::string::npos);
  const auto below = imram_cli("train --data d --out o --nproc 2 --nproc-max 1");
  expect_error(below, "more than 1 (--nproc-max)");
  EXPECT_EQ(below.status, 2) << below.output;
}

// Item 13: a newcomer's first hour: the demo's world is shown, and train says what it does
// before its first progress line.
TEST_F(Hardening, NewcomersAreToldWhatIsHappening) {
  const auto synth = imram_cli("synth --help");
  EXPECT_NE(synth.output.find("--regions 16 --feat-dim 256"), std::string::npos) << synth.output;
  const auto trained = imram_cli("--threads 1 train --data " + data() + " --out " + file("loud") +
                                 " --mode text --steps 1 --embed-size 16 --word-dim 8 --epochs 1 --batch-size 10 "
                                 "--val-images 20");
  ASSERT_EQ(trained.status, 0) << trained.output;
  EXPECT_EQ(trained.output.rfind("training text-IMRAM (K=1, d=16) on 40 images and 200 captions of ", 0), 0u)
      << trained.output;
}

}  // namespace

// Round 3, defect 9: --split was a path. `features --split ../../escaped` wrote outside --out,
// `--split ""` wrote `_ims.npy`, `--split a/b` made a subfolder. A split is a plain name, in
// every command that takes one; refused as a usage error before anything is read or written.
TEST_F(Hardening, ASplitIsAPlainNameInEveryCommand) {
  const auto pictures = file("pictures");
  fs::create_directories(pictures);
  fs::copy_file(imram::test::testdata("backbones/known_96x64.png"), pictures + "/a.png");
  const auto out = file("deep/er/features");
  const auto backbone = imram::test::testdata("backbones/grid_d256_g4.pt");
  // Every command with each of four spellings; the library's check is tested with more below.
  for (const std::string split : {"../../escaped", "''", "a/b", ".."}) {
    const auto quoted = split == "''" ? split : "'" + split + "'";
    for (const auto& command :
         {"features --backbone " + backbone + " --images " + pictures + " --out " + out + " --split " + quoted,
          "eval --model " + model() + " --data " + data() + " --split " + quoted,
          "index build --model " + model() + " --data " + data() + " --out " + file("index") + " --split " + quoted,
          "search --model " + model() + " --data " + data() + " --query red --split " + quoted,
          "explain --model " + model() + " --data " + data() + " --image 0 --caption 0 --split " + quoted,
          "train --data " + data() + " --out " + file("run2") + " --val-split " + quoted,
          // A list's empty entries are skipped (a trailing comma); its others are names.
          "vocab build --data " + data() + " --splits train," + (split == "''" ? "'..'" : quoted) + " --out " +
              file("v.json")}) {
      const auto result = imram_cli(command);
      EXPECT_EQ(result.status, 2) << command << "\n" << result.output;
      EXPECT_NE(result.output.find("a split is a plain name"), std::string::npos) << command << "\n" << result.output;
    }
  }
  EXPECT_FALSE(fs::exists(file("escaped_ims.npy")));
  EXPECT_FALSE(fs::exists(file("deep/escaped_ims.npy")));
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(file("index")));
  EXPECT_FALSE(fs::exists(file("run2")));
}

TEST(HardeningCli, SplitNamesAreCheckedByTheLibraryToo) {
  EXPECT_NO_THROW(imram::require_split_name("test"));
  EXPECT_NO_THROW(imram::require_split_name("testall-5k_v2.1"));
  for (const std::string& bad :
       std::vector<std::string>{"", ".", "..", "../x", "a/b", "/x", "a\\b", "x y", std::string("a\0b", 3), ".hidden"})
    EXPECT_THROW(imram::require_split_name(bad), imram::Error) << bad;
  imram::test::TempDir dir;
  EXPECT_THROW(imram::PrecompSplit::open(dir.path(), "../x"), imram::Error);
}

// Round 3, defect 8: `synth --out` over an existing directory replaced a dataset silently, kept the
// old run's pictures beside the new ones, and wrote into a folder that was not a dataset.
TEST(HardeningCli, SynthReplacesOnlyItsOwnDatasetAndReplacesItWhole) {
  imram::test::TempDir dir;
  const auto user = dir.file("mine");
  fs::create_directories(user);
  write_text(user + "/notes.txt", "mine");
  const std::string small = " --seed 2 --train 2 --dev 2 --regions 6 --feat-dim 8";
  expect_error(imram_cli("synth --out " + user + small + " --test 2"), user + ": exists and is not a");
  EXPECT_EQ(read_text(user + "/notes.txt"), "mine");
  EXPECT_FALSE(fs::exists(user + "/vocab.json"));

  const auto data = dir.file("data");
  const auto count_pictures = [&] {
    std::size_t pictures = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(data + "/pictures/test")) ++pictures;
    return pictures;
  };
  auto made = imram_cli("synth --out " + data + small + " --test 6 --render --render-size 32");
  ASSERT_EQ(made.status, 0) << made.output;
  EXPECT_EQ(count_pictures(), 6u);
  made = imram_cli("synth --out " + data + small + " --test 2 --render --render-size 32");
  ASSERT_EQ(made.status, 0) << made.output;
  EXPECT_EQ(count_pictures(), 2u);
  // Each picture is its scene painted (PNG: lossless), in the row order of the features.
  const auto scenes = imram::read_scenes(data, "test");
  ASSERT_EQ(scenes.size(), 2u);
  for (std::size_t i = 0; i < scenes.size(); ++i) {
    const auto picture = imram::read_picture(data + "/pictures/test/00000" + std::to_string(i) + ".png");
    const auto painted = imram::render_scene(scenes[i], 32);
    ASSERT_EQ(picture.size(), painted.size()) << i;
    EXPECT_EQ(cv::norm(picture, painted, cv::NORM_INF), 0.0) << "picture " << i;
  }
  EXPECT_EQ(imram::NpyArray::open(data + "/test_ims.npy").dim(0), 2);
  made = imram_cli("synth --out " + data + small + " --test 2");
  ASSERT_EQ(made.status, 0) << made.output;
  EXPECT_FALSE(fs::exists(data + "/pictures"));
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
}

// Round 3, defect 11: two `features` runs into one --out had no lock; the second failed after all
// its work. Now the second is refused before it reads a picture, naming the first's pid.
TEST(HardeningCli, FeaturesRefusesASecondWriterOfASplitUpFront) {
  imram::test::TempDir dir;
  const auto pictures = dir.file("pictures"), out = dir.file("out");
  fs::create_directories(pictures);
  fs::create_directories(out);
  fs::copy_file(imram::test::testdata("backbones/known_96x64.png"), pictures + "/a.png");
  const auto command = "features --backbone " + imram::test::testdata("backbones/grid_d256_g4.pt") + " --images " +
                       pictures + " --out " + out + " --split ";
  {
    const imram::WriterLock first(out + "/gallery_features.lock", "the test's run");
    expect_error(imram_cli(command + "gallery"),
                 "split gallery of " + out + " is being written by pid " + std::to_string(::getpid()));
    EXPECT_FALSE(fs::exists(out + "/gallery_ims.npy"));
    EXPECT_FALSE(fs::exists(out + "/gallery_features.partial"));
    const auto other = imram_cli(command + "other");
    EXPECT_EQ(other.status, 0) << other.output;
  }
  const auto after = imram_cli(command + "gallery");
  EXPECT_EQ(after.status, 0) << after.output;
  EXPECT_TRUE(fs::exists(out + "/gallery_ims.npy"));
}

// Round 3, rough edge: `features` printed `warning:` where every other command prints
// `imram: warning:`.
TEST(HardeningCli, FeaturesWarnsAsEveryCommandDoes) {
  imram::test::TempDir dir;
  const auto pictures = dir.file("pictures");
  fs::create_directories(pictures);
  fs::copy_file(imram::test::testdata("backbones/known_96x64.png"), pictures + "/a.png");
  write_text(pictures + "/broken.jpg", "not a picture");
  const auto result = imram_cli("features --backbone " + imram::test::testdata("backbones/grid_d256_g4.pt") +
                                " --images " + pictures + " --out " + dir.file("out") + " --split gallery");
  ASSERT_EQ(result.status, 0) << result.output;
  bool warned = false;
  std::istringstream lines(result.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("broken.jpg") == std::string::npos || line.find("skipped") == std::string::npos) continue;
    EXPECT_EQ(line.rfind("imram: warning: ", 0), 0u) << line;
    warned = true;
  }
  EXPECT_TRUE(warned) << result.output;
}

// Every value a picture command cannot use is a usage error (2) before any picture is read, in
// `features` and in `index add --images` alike; a nested command's --help names the global options.
TEST(HardeningCli, PictureOptionsAreUsageErrorsInBothCommands) {
  imram::test::TempDir dir;
  const auto picture = imram::test::testdata("backbones/known_96x64.png");
  const std::string features = "features --backbone " + imram::test::testdata("backbones/grid_d256_g4.pt") +
                               " --images " + picture + " --out " + dir.file("out") + " --split s ";
  const std::string index_add = "index add " + dir.file("index") + " --backbone " +
                                imram::test::testdata("backbones/grid_d256_g4.pt") + " --images " + picture + " ";
  for (const char* bad : {"--size 0", "--size 10x", "--std 0 0 0", "--std 1 nan 1", "--mean nan 0 0", "--mean 0 inf 0",
                          "--max-pixels 0", "--batch-size 0", "--decode-threads 0"}) {
    for (const auto& command : {features, index_add}) {
      const auto result = imram_cli(command + bad);
      EXPECT_EQ(result.status, 2) << command << bad << ": " << result.output;
      EXPECT_EQ(result.output.rfind("imram: error: ", 0), 0u) << result.output;
    }
  }
  EXPECT_FALSE(fs::exists(dir.file("out")));
  for (const char* bad : {"--train 3", "--test 0", "--regions 2", "--shapes 1", "--position-twins 2"}) {
    const auto result = imram_cli("synth --out " + dir.file("synth") + " " + bad);
    EXPECT_EQ(result.status, 2) << bad << ": " << result.output;
    EXPECT_NE(result.output.find("synthetic data: "), std::string::npos) << result.output;
  }
  EXPECT_FALSE(fs::exists(dir.file("synth")));
  for (const char* nested : {"index build --help", "index add --help", "bench search --help", "vocab build --help"}) {
    const auto result = imram_cli(nested);
    EXPECT_EQ(result.status, 0) << nested << ": " << result.output;
    EXPECT_NE(result.output.find("Global options (before or after the command): --threads"), std::string::npos)
        << nested << ": " << result.output;
  }
}
