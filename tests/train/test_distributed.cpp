// Data-parallel training over c10d/Gloo on loopback: a world of ranks takes the step one process
// takes with the same whole batch (weights within 1e-5 + 1e-4 |w|, the train_full_k2 tolerance),
// uneven shares and resumes included; a lost rank ends the others with an error naming it.
#include <gtest/gtest.h>
#include <signal.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "cli/cli_runner.h"
#include "imram/data/npy.h"
#include "imram/error.h"
#include "imram/model/model_dir.h"
#include "imram/model/tensor_io.h"
#include "imram/train/distributed.h"
#include "imram/train/distributed_step.h"
#include "imram/train/launch.h"
#include "npy_tensor.h"
#include "process.h"
#include "serve/http_client.h"
#include "test_util.h"

namespace {

using imram::test::Process;
using Environment = std::vector<std::pair<std::string, std::string>>;

// Starts `arguments` with extra environment variables, stdout and stderr into `log`.
Process spawn(const std::vector<std::string>& arguments, const Environment& environment, const std::string& log) {
  return Process(arguments, {imram::test::SpawnOptions::Output::File, log, environment});
}

// The exit status, or -1 when the process is still running after `seconds` (it is then killed).
int wait_for(Process& process, double seconds) {
  if (const auto status = process.wait_for(seconds)) return *status;
  process.kill(SIGKILL);
  process.wait_for(-1);
  return -1;
}

using imram::test::read_text;
std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

// `imram --threads 1 train <arguments>` to completion; its output in `log`.
int run_train(const std::string& arguments, const std::string& log) {
  auto argv = split_words(std::string(IMRAM_BINARY) + " --threads 1 train " + arguments);
  auto run = spawn(argv, {}, log);
  return wait_for(run, 300);
}

std::string tiny_model() { return " --embed-size 16 --word-dim 8 --steps 2 --lr 2e-3 --seed 3 --quiet --log-every 1 "; }

void expect_same_weights(const std::string& expected_dir, const std::string& actual_dir) {
  const auto expected = imram::load_model(expected_dir), actual = imram::load_model(actual_dir);
  const auto a = actual.net->named_parameters();
  for (const auto& item : expected.net->named_parameters()) {
    const auto e = item.value().to(torch::kFloat64), w = a[item.key()].to(torch::kFloat64);
    const auto excess = ((w - e).abs() - (1e-5 + 1e-4 * e.abs())).max().item<double>();
    EXPECT_LE(excess, 0.0) << item.key() << ": max |diff| " << (w - e).abs().max().item<double>();
  }
}

std::vector<std::string> lines_of_type(const std::string& metrics, const std::string& type) {
  std::vector<std::string> lines;
  std::istringstream in(read_text(metrics));
  for (std::string line; std::getline(in, line);)
    if (line.find("\"type\":\"" + type + "\"") != std::string::npos) lines.push_back(line);
  return lines;
}

TEST(RankSlice, ContiguousSharesTheFirstRanksOneMore) {
  const std::vector<std::pair<std::int64_t, std::int64_t>> expected{{0, 4}, {4, 3}, {7, 3}};
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(imram::rank_slice(10, r, 3).begin, expected[std::size_t(r)].first);
    EXPECT_EQ(imram::rank_slice(10, r, 3).count, expected[std::size_t(r)].second);
  }
  EXPECT_EQ(imram::rank_slice(2, 2, 3).count, 0);
  EXPECT_EQ(imram::rank_slice(2, 2, 3).begin, 2);
}

class ScopedEnvironment {
 public:
  explicit ScopedEnvironment(const Environment& values) {
    for (const auto& [name, value] : values) {
      const char* old = std::getenv(name.c_str());
      saved_.push_back({name, old ? std::optional<std::string>(old) : std::nullopt});
      ::setenv(name.c_str(), value.c_str(), 1);
    }
  }
  ~ScopedEnvironment() {
    for (const auto& [name, value] : saved_)
      value ? ::setenv(name.c_str(), value->c_str(), 1) : ::unsetenv(name.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(WorldFromEnvironment, TorchrunAndSlurmConventions) {
  {
    ScopedEnvironment torchrun({{"WORLD_SIZE", "4"},
                                {"RANK", "2"},
                                {"LOCAL_RANK", "0"},
                                {"LOCAL_WORLD_SIZE", "2"},
                                {"MASTER_ADDR", "node7"},
                                {"MASTER_PORT", "29400"}});
    const auto spec = imram::world_from_environment();
    ASSERT_TRUE(spec);
    EXPECT_EQ(spec->rank, 2);
    EXPECT_EQ(spec->size, 4);
    EXPECT_EQ(spec->local_size, 2);
    EXPECT_EQ(spec->master_addr, "node7");
    EXPECT_EQ(spec->master_port, 29400);
    EXPECT_EQ(imram::device_of_rank(torch::Device("cuda"), *spec), torch::Device("cuda:0"));
  }
  {
    ScopedEnvironment slurm({{"SLURM_PROCID", "5"},
                             {"SLURM_NTASKS", "8"},
                             {"SLURM_LOCALID", "1"},
                             {"SLURM_STEP_ID", "0"},
                             {"SLURM_STEP_NODELIST", "gpu[03-04,07]"},
                             {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"},
                             {"SLURM_JOB_ID", "123456"}});
    const auto spec = imram::world_from_environment();
    ASSERT_TRUE(spec);
    EXPECT_EQ(spec->launcher, "slurm");
    EXPECT_EQ(spec->rank, 5);
    EXPECT_EQ(spec->size, 8);
    EXPECT_EQ(spec->local_rank, 1);
    EXPECT_EQ(spec->local_size, 4);
    EXPECT_EQ(spec->master_addr, "gpu03");
    EXPECT_EQ(spec->master_port, 20000 + 123456 % 20000);
    EXPECT_EQ(imram::device_of_rank(torch::Device("cuda"), *spec), torch::Device("cuda:1"));
  }
  {
    ScopedEnvironment bad({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}});
    EXPECT_THROW(imram::world_from_environment(), imram::Error);
  }
  // A batch script inside an allocation is one process, not a world.
  ScopedEnvironment batch_script({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}});
  EXPECT_FALSE(imram::world_from_environment());
}

struct TinyData {
  imram::test::TempDir dir;
  explicit TinyData(std::int64_t train_images) {
    imram::test::write_small_world(dir.file("data"), train_images, 20, 20, 6, 16);
  }
  std::string data() const { return dir.file("data"); }
};

// Issue 38 item 1: `eval --nproc N` splits the captions over the ranks and gathers the columns.
// Every pair is scored by the same engine in each, only in other blocks: the matrix equals one
// process's to 1e-6 (the blocks' BLAS calls differ in size, so bitwise equality is not promised)
// and the metrics, which rank pairs, are the same.
struct EvalWorld {
  TinyData data{20};
  std::string model;
  EvalWorld() {
    imram::ModelConfig config;
    config.mode = imram::ImramMode::Full;
    config.iteration_steps = 3;
    config.embed_size = 16;
    config.word_dim = 8;
    config.img_dim = 16;
    config.global_head = 8;  // an index of this model has a shortlist
    imram::Model random;
    random.vocabulary = imram::Vocabulary::from_file(data.dir.file("data/vocab.json"));
    config.vocab_size = random.vocabulary->size();
    torch::manual_seed(11);
    random.net = imram::ImramModel(config);
    model = data.dir.file("model");
    imram::save_model(model, random);
  }
  // `imram --threads 1 index build` of the test split into `out`, with `extra` options.
  imram::test::CommandResult build_index(const std::string& out, const std::string& extra = "--quiet") const {
    return imram::test::imram_cli("--threads 1 index build --model " + model + " --data " + data.data() +
                                  " --split test --out " + out + " " + extra);
  }
  // `imram --threads 1 eval ... <extra>`: its status; the JSON line and sims under `name`.
  int eval(const std::string& name, const std::string& extra) {
    auto argv = split_words(std::string(IMRAM_BINARY) + " --threads 1 eval --model " + model + " --data " +
                            data.data() + " --split test --json --save-json " + data.dir.file(name + ".json") +
                            " --save-sims " + data.dir.file(name + ".npy") + " " + extra);
    auto run = spawn(argv, {}, data.dir.file(name + ".log"));
    return wait_for(run, 300);
  }
};

TEST(DistributedEval, TwoAndThreeRanksGiveTheMatrixAndMetricsOfOneProcess) {
  EvalWorld world;
  ASSERT_EQ(world.eval("one", ""), 0) << read_text(world.data.dir.file("one.log"));
  const auto one = imram::test::read_npy_as_double(world.data.dir.file("one.npy"));
  const auto metrics = nlohmann::json::parse(read_text(world.data.dir.file("one.json")));
  for (const auto& [name, extra] :
       std::vector<std::pair<std::string, std::string>>{{"two", "--nproc 2"}, {"three", "--nproc 3 --nproc-max 3"}}) {
    ASSERT_EQ(world.eval(name, extra), 0) << read_text(world.data.dir.file(name + ".log"));
    const auto ranks = imram::test::read_npy_as_double(world.data.dir.file(name + ".npy"));
    ASSERT_EQ(ranks.size(), one.size()) << name;
    ASSERT_EQ(one.size(), 20u * 100u);
    double largest = 0;
    for (std::size_t i = 0; i < one.size(); ++i) largest = std::max(largest, std::abs(ranks[i] - one[i]));
    EXPECT_LE(largest, 1e-6) << name;
    EXPECT_EQ(nlohmann::json::parse(read_text(world.data.dir.file(name + ".json"))), metrics) << name;
    // Rank 0 alone reports: one JSON line on stdout.
    const auto said = read_text(world.data.dir.file(name + ".log"));
    std::size_t lines = 0;
    for (auto at = said.find("{\"i2t\""); at != std::string::npos; at = said.find("{\"i2t\"", at + 1)) ++lines;
    EXPECT_EQ(lines, 1u) << said;
  }
}

// The same for `eval --index`: every pair's columns and each direction's queries split over the
// ranks, the rows gathered; the exhaustive, two-stage and stage-1 results are one process's
// (all but the times, which are each rank's own), and so are a sampled evaluation's.
TEST(DistributedEval, IndexEvaluationOfTwoAndThreeRanksIsOneProcesss) {
  EvalWorld world;
  const auto index = world.data.dir.file("index");
  const auto built = world.build_index(index);
  ASSERT_EQ(built.status, 0) << built.output;
  const std::function<void(nlohmann::json&)> without_times = [&](nlohmann::json& json) {
    if (json.is_array())
      for (auto& item : json) without_times(item);
    if (!json.is_object()) return;
    for (auto it = json.begin(); it != json.end();)
      if (it.key().rfind("ms_per_", 0) == 0) {
        it = json.erase(it);
      } else {
        without_times(*it);
        ++it;
      }
  };
  const auto evaluated = [&](const std::string& extra) {
    const auto result = imram::test::imram_cli("--threads 1 eval --index " + index + " --json " + extra);
    EXPECT_EQ(result.status, 0) << result.output;
    auto json = nlohmann::json::parse(result.output.substr(result.output.find('{')), nullptr, false);
    without_times(json);
    return json;
  };
  const auto one = evaluated("");
  ASSERT_TRUE(one.contains("exhaustive") && one.contains("stage1")) << one.dump();
  EXPECT_EQ(evaluated("--nproc 2"), one);
  EXPECT_EQ(evaluated("--nproc 3 --nproc-max 3"), one);
  // A sampled evaluation: the sample's shares, their counts added up.
  const std::string sampled = "--queries 30 --image-queries 7 --shortlist 4,8 --seed 3";
  const auto sampled_one = evaluated(sampled);
  ASSERT_TRUE(sampled_one.contains("points")) << sampled_one.dump();
  EXPECT_EQ(evaluated(sampled + " --nproc 2"), sampled_one);
  EXPECT_EQ(evaluated(sampled + " --nproc 3 --nproc-max 3"), sampled_one);
}

// Starts `argv` (a command with --nproc 2), kills rank 1 as soon as the launcher names the ranks,
// and expects the launcher to end with status 1 naming it.
void expect_a_killed_rank_ends_the_world(const std::vector<std::string>& argv, const std::string& log) {
  auto launcher = spawn(argv, {{"IMRAM_DIST_HEARTBEAT_TIMEOUT", "5"}}, log);
  std::string said;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((said = read_text(log)).find("started 2 ranks (pids ") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto at = said.find("started 2 ranks (pids ");
  ASSERT_NE(at, std::string::npos) << said;
  const auto pids = split_words(said.substr(at + 22, said.find(')', at) - at - 22));
  ASSERT_EQ(pids.size(), 2u) << said;
  ::kill(pid_t(std::stol(pids[1])), SIGKILL);
  EXPECT_EQ(wait_for(launcher, 120), 1) << read_text(log);
  EXPECT_NE(read_text(log).find("rank 1 (pid " + pids[1] + ")"), std::string::npos) << read_text(log);
}

TEST(DistributedEval, AKilledRankEndsTheWorldWithStatusOneNamingIt) {
  EvalWorld world;
  const auto log = world.data.dir.file("killed.log");
  auto argv = split_words(std::string(IMRAM_BINARY) + " --threads 1 eval --nproc 2 --model " + world.model +
                          " --data " + world.data.data() + " --split test --json");
  expect_a_killed_rank_ends_the_world(argv, log);
}

// Issue 38 item 2: `index build --nproc N`. Rank r encodes the r-th block of images and of captions
// of each round and codes its share of each block of fragments; rank 0 writes. Every file (store,
// memory halves, codes, codebooks, globals, FAISS, manifest, model) is one process's, byte for
// byte, when each process has the same thread count (the encoders' last bits depend on it).
// Blocks of 2 images and 8 captions make every rank encode several.
TEST(DistributedIndex, TwoAndThreeRanksWriteTheBytesOfOneProcess) {
  EvalWorld world;
  const auto build = [&](const std::string& name, const std::string& extra) {
    const auto out = world.data.dir.file(name);
    const auto result = world.build_index(out, "--memory-halves --batch-size 2 " + extra);
    EXPECT_EQ(result.status, 0) << result.output;
    return std::make_pair(out, result.output);
  };
  const auto [one, one_said] = build("one", "--quiet");
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(one))
    if (entry.is_regular_file()) names.push_back(std::filesystem::relative(entry.path(), one).string());
  ASSERT_GE(names.size(), 20u) << one_said;  // store, halves, codes, codebooks, globals, FAISS, manifest, model
  for (const auto& [name, extra] :
       std::vector<std::pair<std::string, std::string>>{{"two", "--nproc 2"}, {"three", "--nproc 3 --nproc-max 3"}}) {
    const auto [out, said] = build(name, extra);
    // Rank 0 alone speaks: one note per codebook learned, one summary line.
    const auto count = [&](const std::string& what) {
      std::size_t found = 0;
      for (auto at = said.find(what); at != std::string::npos; at = said.find(what, at + 1)) ++found;
      return found;
    };
    EXPECT_EQ(count("built "), 1u) << said;
    EXPECT_EQ(count("learning a codebook of "), 2u) << said;
    std::size_t files = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(out)) files += entry.is_regular_file();
    EXPECT_EQ(files, names.size()) << name;
    for (const auto& file : names)
      EXPECT_EQ(read_text(out + "/" + file), read_text(one + "/" + file)) << name << ": " << file << " differs";
    const auto verified = imram::test::imram_cli("index verify " + out);
    EXPECT_EQ(verified.status, 0) << verified.output;
  }
  // Shards (docs/index.md#shards): the world builds each in turn, as one process does; with
  // residuals, which each rank codes for its share with the buckets rank 0 learned.
  const auto [sharded_one, sharded_one_said] = build("sharded_one", "--quiet --shards 2 --residual-bits 4");
  const auto [sharded_two, sharded_two_said] = build("sharded_two", "--quiet --shards 2 --residual-bits 4 --nproc 2");
  std::size_t sharded_files = 0, world_files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(sharded_one)) {
    if (!entry.is_regular_file()) continue;
    ++sharded_files;
    const auto file = std::filesystem::relative(entry.path(), sharded_one).string();
    EXPECT_EQ(read_text(sharded_two + "/" + file), read_text(sharded_one + "/" + file)) << file << " differs";
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(sharded_two))
    world_files += entry.is_regular_file();
  // Two indexes, each with its two residual files, and shards.json.
  EXPECT_EQ(sharded_files, 2 * (names.size() + 2) + 1) << sharded_one_said;
  EXPECT_EQ(world_files, sharded_files) << sharded_two_said;
}

// A rank killed while the world builds: the launcher ends it with status 1 naming the rank, and
// the index that was at --out is still there, whole.
TEST(DistributedIndex, AKilledRankEndsTheWorldAndLeavesTheIndexThatWasThere) {
  EvalWorld world;
  const auto out = world.data.dir.file("index");
  const auto first = world.build_index(out);
  ASSERT_EQ(first.status, 0) << first.output;
  const auto manifest = read_text(out + "/manifest.json");
  const auto log = world.data.dir.file("killed.log");
  auto argv = split_words(std::string(IMRAM_BINARY) + " --threads 1 index build --nproc 2 --batch-size 1 --model " +
                          world.model + " --data " + world.data.data() + " --split test --out " + out);
  expect_a_killed_rank_ends_the_world(argv, log);
  EXPECT_EQ(read_text(out + "/manifest.json"), manifest);
  const auto verified = imram::test::imram_cli("index verify " + out);
  EXPECT_EQ(verified.status, 0) << verified.output;
}

// Issue 38 item 3: `imram serve --index SHARDED --nproc S`, rank r holding shard r, rank 0
// answering HTTP. The world is started as a user starts it, on a free port, with a short heartbeat
// (IMRAM_DIST_HEARTBEAT_TIMEOUT=3) so that a lost rank shows within seconds.
struct ServingWorld {
  imram::test::Process process;
  int port = 0;
  std::vector<std::string> ranks;  // the pids the launcher names

  ServingWorld(const std::string& index, int nproc)
      : process(serve_argv(index, nproc),
                {imram::test::SpawnOptions::Output::Pipe, "", {{"IMRAM_DIST_HEARTBEAT_TIMEOUT", "3"}}}) {
    const auto listening = process.read_until(std::regex("listening on http://127\\.0\\.0\\.1:(\\d+)/"), 120);
    if (listening.size() == 2) port = std::stoi(listening[1]);
    std::smatch started;
    const auto& said = process.output();
    if (std::regex_search(said, started, std::regex("started \\d+ ranks \\(pids ([0-9 ]+)\\)")))
      ranks = split_words(started[1]);
  }

  static std::vector<std::string> serve_argv(const std::string& index, int nproc) {
    auto argv = split_words(std::string(IMRAM_BINARY) + " --threads 1 serve --port 0 --index " + index);
    if (nproc > 1)
      for (const auto& word : split_words("--nproc " + std::to_string(nproc) + " --nproc-max " + std::to_string(nproc)))
        argv.push_back(word);
    return argv;
  }

  imram::test::HttpResponse search(const nlohmann::json& request) const {
    return imram::test::http(port, "POST", "/api/search", request.dump());
  }
};

// Every query's answer without its timings: what must not depend on who searched.
std::vector<nlohmann::json> answers_of(const ServingWorld& serving, const std::vector<nlohmann::json>& requests) {
  std::vector<nlohmann::json> answers;
  for (const auto& request : requests) {
    const auto response = serving.search(request);
    EXPECT_EQ(response.status, 200) << request.dump() << ": " << response.body;
    auto answer = nlohmann::json::parse(response.body, nullptr, false);
    if (answer.is_object()) answer.erase("timings");
    answers.push_back(answer);
  }
  return answers;
}

TEST(DistributedServe, TwoAndThreeRanksAnswerAsOneProcessAndEndCleanlyOnSigterm) {
  EvalWorld world;
  // Lists that cover every shard's items: each rank's best k are all its items, so the merged
  // answer is the whole gallery's ranking, as one process gives it.
  std::vector<nlohmann::json> requests;
  std::ifstream captions(world.data.data() + "/test_caps.txt");
  std::string caption;
  for (int i = 0; i < 4 && std::getline(captions, caption); ++i) requests.push_back({{"text", caption}, {"top", 20}});
  for (const int image : {0, 7, 13, 19}) requests.push_back({{"image", image}, {"top", 100}});
  for (const int shards : {2, 3}) {
    const auto index = world.data.dir.file("sharded" + std::to_string(shards));
    const auto built = world.build_index(index, "--quiet --shards " + std::to_string(shards));
    ASSERT_EQ(built.status, 0) << built.output;
    ServingWorld one(index, 1);
    ASSERT_GT(one.port, 0) << one.process.output();
    const auto expected = answers_of(one, requests);
    ServingWorld ranks(index, shards);
    ASSERT_GT(ranks.port, 0) << ranks.process.output();
    ASSERT_EQ(ranks.ranks.size(), std::size_t(shards)) << ranks.process.output();
    const auto answered = answers_of(ranks, requests);
    for (std::size_t q = 0; q < requests.size(); ++q) {
      EXPECT_EQ(answered[q], expected[q]) << requests[q].dump();
      EXPECT_EQ(answered[q]["coverage"], nlohmann::json({{"shards", shards}, {"answered", shards}}));
      EXPECT_EQ(answered[q]["results"].size(), requests[q]["top"].get<std::size_t>()) << requests[q].dump();
    }
    const auto info = nlohmann::json::parse(imram::test::http(ranks.port, "GET", "/api/info").body);
    EXPECT_EQ(info["shards"], nlohmann::json({{"shards", shards}, {"ranks", shards}})) << info.dump();
    // SIGTERM to the launcher: rank 0 finishes, tells the others, and every rank ends with 0.
    ranks.process.kill(SIGTERM);
    EXPECT_EQ(wait_for(ranks.process, 60), 0) << ranks.process.output();
    EXPECT_NE(ranks.process.output().find("imram serve: stopped"), std::string::npos) << ranks.process.output();
    one.process.kill(SIGTERM);
    EXPECT_EQ(wait_for(one.process, 60), 0) << one.process.output();
  }
}

// A rank that dies (SIGKILL) or hangs (SIGSTOP): the next search is a 503 naming its shard, never
// a hang (the client's own timeout would fail the test); /healthz says degraded with a 503 for a
// load balancer; SIGTERM then ends the world with status 1, the lost rank named.
void expect_a_lost_rank_turns_searches_into_503(int signal) {
  EvalWorld world;
  const auto index = world.data.dir.file("sharded");
  const auto built = world.build_index(index, "--quiet --shards 2");
  ASSERT_EQ(built.status, 0) << built.output;
  ServingWorld ranks(index, 2);
  ASSERT_GT(ranks.port, 0) << ranks.process.output();
  ASSERT_EQ(ranks.ranks.size(), 2u) << ranks.process.output();
  const nlohmann::json request = {{"text", "a red circle"}, {"top", 5}};
  ASSERT_EQ(ranks.search(request).status, 200);
  ::kill(pid_t(std::stol(ranks.ranks[1])), signal);
  const auto refused = ranks.search(request);
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("shard 1 of 2"), std::string::npos) << refused.body;
  const auto health = imram::test::http(ranks.port, "GET", "/healthz");
  EXPECT_EQ(health.status, 503) << health.body;
  const auto said = nlohmann::json::parse(health.body, nullptr, false);
  EXPECT_EQ(said.value("status", ""), "degraded") << health.body;
  EXPECT_NE(said.value("reason", "").find("rank 1 lost"), std::string::npos) << health.body;
  // What needs no shard still works: the captions and pictures come from rank 0.
  EXPECT_EQ(imram::test::http(ranks.port, "GET", "/api/info").status, 200);
  ranks.process.kill(SIGTERM);
  EXPECT_EQ(wait_for(ranks.process, 60), 1) << ranks.process.output();
  EXPECT_NE(ranks.process.output().find("rank 1 (pid " + ranks.ranks[1] + ")"), std::string::npos)
      << ranks.process.output();
}

TEST(DistributedServe, AKilledRankTurnsSearchesInto503NamingItsShard) {
  expect_a_lost_rank_turns_searches_into_503(SIGKILL);
}

TEST(DistributedServe, AStoppedRankTurnsSearchesInto503NamingItsShard) {
  expect_a_lost_rank_turns_searches_into_503(SIGSTOP);
}

TEST(DistributedTraining, TwoRanksEndWithTheWeightsOfOneProcess) {
  TinyData data(40);
  const auto common = " --data " + data.data() + tiny_model() +
                      " --batch-size 10 --max-steps 5 --no-shuffle --val-split dev --val-images 10";
  ASSERT_EQ(run_train(common + " --out " + data.dir.file("one"), data.dir.file("one.log")), 0)
      << read_text(data.dir.file("one.log"));
  ASSERT_EQ(run_train(common + " --nproc 2 --out " + data.dir.file("two"), data.dir.file("two.log")), 0)
      << read_text(data.dir.file("two.log"));
  expect_same_weights(data.dir.file("one/last"), data.dir.file("two/last"));
  // Rank 0 alone writes: one line per step and one validation, as one process writes.
  const auto train_one = lines_of_type(data.dir.file("one/metrics.jsonl"), "train");
  const auto train_two = lines_of_type(data.dir.file("two/metrics.jsonl"), "train");
  ASSERT_EQ(train_one.size(), 5u);
  ASSERT_EQ(train_two.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    const auto loss_one = nlohmann::json::parse(train_one[i])["loss"].get<double>();
    const auto loss_two = nlohmann::json::parse(train_two[i])["loss"].get<double>();
    EXPECT_NEAR(loss_two, loss_one, 1e-5 * std::abs(loss_one) + 1e-6) << "step " << i + 1;
  }
  const auto val_one = lines_of_type(data.dir.file("one/metrics.jsonl"), "val");
  const auto val_two = lines_of_type(data.dir.file("two/metrics.jsonl"), "val");
  ASSERT_EQ(val_one.size(), 1u);
  ASSERT_EQ(val_two.size(), 1u);
  EXPECT_NEAR(nlohmann::json::parse(val_two[0])["rsum"].get<double>(),
              nlohmann::json::parse(val_one[0])["rsum"].get<double>(), 1e-9);
  EXPECT_EQ(read_text(data.dir.file("two.log")).find("finished 5 steps") == std::string::npos, false)
      << read_text(data.dir.file("two.log"));
}

TEST(DistributedTraining, ThreeRanksWithUnevenSharesAndAResumeFromTwoRanks) {
  // 30 captions in batches of 14: shares 5/5/4, then an epoch's last batch of 2 (< 3 ranks).
  TinyData data(6);
  const auto common =
      " --data " + data.data() + tiny_model() + " --batch-size 14 --epochs 2 --no-shuffle --val-split none";
  ASSERT_EQ(run_train(common + " --out " + data.dir.file("one"), data.dir.file("one.log")), 0)
      << read_text(data.dir.file("one.log"));
  ASSERT_EQ(run_train(common + " --nproc 2 --max-steps 2 --out " + data.dir.file("world"), data.dir.file("two.log")), 0)
      << read_text(data.dir.file("two.log"));
  ASSERT_EQ(run_train("--nproc 3 --nproc-max 3 --resume " + data.dir.file("world") + " --max-steps 6",
                      data.dir.file("three.log")),
            0)
      << read_text(data.dir.file("three.log"));
  EXPECT_NE(read_text(data.dir.file("three.log")).find("finished at step 6"), std::string::npos)
      << read_text(data.dir.file("three.log"));
  expect_same_weights(data.dir.file("one/last"), data.dir.file("world/last"));
}

// The rank processes of FixtureStepOfTwoRanks: this test binary started again with the world's
// variables set (and IMRAM_TEST_FIXTURE_RANK), running this test only. Disabled, so that the suite
// lists it as what it is (a part of that test), not as a skipped test.
TEST(DistributedRank, DISABLED_FixtureStep) {
  ASSERT_TRUE(std::getenv("IMRAM_TEST_FIXTURE_RANK")) << "runs as a rank of DistributedTraining.FixtureStepOfTwoRanks";
  const auto spec = imram::world_from_environment();
  ASSERT_TRUE(spec);
  auto world = imram::Communicator::connect(*spec, torch::kCPU);
  const std::string dir = imram::test::testdata("reference/train_full_k2");
  const auto images = imram::test::load_npy_tensor(dir + "/inputs/images.npy");
  const auto share = imram::rank_slice(images.size(0), world->rank(), world->size());
  const imram::Batch local{
      images.narrow(0, share.begin, share.count),
      imram::test::load_npy_tensor(dir + "/inputs/captions.npy").narrow(0, share.begin, share.count),
      imram::test::load_npy_tensor(dir + "/inputs/lengths.npy").narrow(0, share.begin, share.count)};
  auto expect_close = [](const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what) {
    ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
    const auto a = actual.to(torch::kFloat64), e = expected.to(torch::kFloat64);
    EXPECT_LE(((a - e).abs() - (1e-5 + 1e-4 * e.abs())).max().item<double>(), 0.0)
        << what << ": max |diff| " << (a - e).abs().max().item<double>();
  };

  auto probe_model = imram::import_reference_model(dir);
  auto probe = imram::make_optimizer(*probe_model.net, 0.0);
  const auto bytes_before = world->bytes_exchanged();
  const auto result = imram::distributed_train_step(*probe_model.net, probe, local, {0.2, true, 0.0}, *world);
  const double expected_loss = imram::test::load_npy_tensor(dir + "/expected/loss.npy").item<double>();
  EXPECT_NEAR(result.loss, expected_loss, 1e-5 * std::abs(expected_loss));
  EXPECT_NEAR(result.grad_norm, 11.027562141418457, 1e-4 * 11.03);
  expect_close(result.scores,
               imram::test::load_npy_tensor(dir + "/expected/scores.npy").narrow(1, share.begin, share.count),
               "scores");
  for (const auto& item : probe_model.net->named_parameters())
    expect_close(item.value().grad(), imram::test::load_npy_tensor(dir + "/expected/grads/" + item.key() + ".npy"),
                 "grad of " + item.key());

  // What a step moves (distributed.h counts the collectives' results): the shares' sizes, the
  // regions (padded to the largest share) forward and their gradient back, each row's hardest
  // negative, positive and holder, and the gradients with the loss.
  const std::int64_t W = world->size(), B = images.size(0), R = images.size(1);
  const std::int64_t d = probe_model.config().embed_size, share_max = (B + W - 1) / W;
  std::int64_t P = 0;
  for (const auto& p : probe_model.net->parameters()) P += p.numel();
  const std::uint64_t expected_bytes =
      W * 8 + W * share_max * R * d * 4 + 2 * B * 4 + B * 4 + B * R * d * 4 + (P + 1) * 4;
  EXPECT_EQ(world->bytes_exchanged() - bytes_before, expected_bytes);

  auto model = imram::import_reference_model(dir);
  auto adam = imram::make_optimizer(*model.net, 2e-4);
  imram::distributed_train_step(*model.net, adam, local, {0.2, true, 2.0}, *world);
  for (const auto& item : model.net->named_parameters())
    expect_close(item.value(),
                 imram::test::load_npy_tensor(dir + "/expected/weights_after_step/" + item.key() + ".npy"),
                 "weight " + item.key());
  world->close();
}

TEST(DistributedTraining, FixtureStepOfTwoRanks) {
  imram::test::TempDir dir;
  const auto port = std::to_string(imram::free_loopback_port());
  std::vector<Process> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.push_back(spawn(
        {"/proc/self/exe", "--gtest_also_run_disabled_tests", "--gtest_filter=DistributedRank.DISABLED_FixtureStep"},
        {{"IMRAM_TEST_FIXTURE_RANK", "1"},
         {"RANK", std::to_string(r)},
         {"WORLD_SIZE", "2"},
         {"MASTER_ADDR", "127.0.0.1"},
         {"MASTER_PORT", port},
         {"OMP_NUM_THREADS", "1"}},
        dir.file("rank" + std::to_string(r) + ".log")));
  for (int r = 0; r < 2; ++r) {
    const auto log = dir.file("rank" + std::to_string(r) + ".log");
    EXPECT_EQ(wait_for(ranks[std::size_t(r)], 120), 0) << "rank " << r << ":\n" << read_text(log);
    EXPECT_NE(read_text(log).find("[  PASSED  ] 1 test"), std::string::npos) << read_text(log);
  }
}

// Waits until rank 0 has logged `steps` training steps (at most 120 s).
// Whether rank 0 logged `steps` training steps within 120 s.
[[nodiscard]] bool wait_for_steps(const TinyData& data, std::size_t steps) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (lines_of_type(data.dir.file("run/metrics.jsonl"), "train").size() < steps &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return lines_of_type(data.dir.file("run/metrics.jsonl"), "train").size() >= steps;
}

// Two ranks started the torchrun way on a long run, returned once rank 0 has logged 3 steps.
std::vector<Process> start_two_ranks(const TinyData& data) {
  const auto port = std::to_string(imram::free_loopback_port());
  auto argv = split_words(std::string(IMRAM_BINARY) + " --threads 1 train --data " + data.data() + tiny_model() +
                          " --batch-size 10 --epochs 1000 --val-split none --out " + data.dir.file("run"));
  std::vector<Process> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.push_back(spawn(argv,
                          {{"RANK", std::to_string(r)},
                           {"WORLD_SIZE", "2"},
                           {"MASTER_ADDR", "127.0.0.1"},
                           {"MASTER_PORT", port},
                           {"IMRAM_DIST_HEARTBEAT_TIMEOUT", "20"}},
                          data.dir.file("rank" + std::to_string(r) + ".log")));
  EXPECT_TRUE(wait_for_steps(data, 3)) << read_text(data.dir.file("rank0.log"));
  return ranks;
}

TEST(DistributedTraining, SigtermToOneRankStopsBothAtTheSameStepWithOneLast) {
  TinyData data(40);
  auto ranks = start_two_ranks(data);
  ASSERT_GE(lines_of_type(data.dir.file("run/metrics.jsonl"), "train").size(), 3u)
      << read_text(data.dir.file("rank0.log"));
  ranks[1].kill(SIGTERM);
  // Both stop with the status of an interrupted run whose state is saved.
  EXPECT_EQ(wait_for(ranks[0], 60), imram::kInterruptedExitStatus) << read_text(data.dir.file("rank0.log"));
  EXPECT_EQ(wait_for(ranks[1], 60), imram::kInterruptedExitStatus) << read_text(data.dir.file("rank1.log"));
  const auto said = read_text(data.dir.file("rank0.log"));
  const auto at = said.find("interrupted at step ");
  ASSERT_NE(at, std::string::npos) << said;
  const auto step = std::stoll(said.substr(at + 20));
  const auto state = nlohmann::json::parse(read_text(data.dir.file("run/last/training.json")));
  EXPECT_EQ(state["position"]["global_step"].get<std::int64_t>(), step);
  const auto logged = lines_of_type(data.dir.file("run/metrics.jsonl"), "train");
  EXPECT_EQ(nlohmann::json::parse(logged.back())["step"].get<std::int64_t>(), step);
  EXPECT_EQ(read_text(data.dir.file("rank1.log")), "");  // rank 0 alone reports
}

// `victim` is killed with SIGKILL once training runs.
void expect_the_survivor_names_the_lost_rank(int victim) {
  TinyData data(40);
  auto ranks = start_two_ranks(data);
  ASSERT_GE(lines_of_type(data.dir.file("run/metrics.jsonl"), "train").size(), 3u)
      << read_text(data.dir.file("rank0.log"));
  ranks[std::size_t(victim)].kill(SIGKILL);
  EXPECT_EQ(wait_for(ranks[std::size_t(victim)], 10), 128 + SIGKILL);
  const int survivor = 1 - victim;
  const auto status = wait_for(ranks[std::size_t(survivor)], 60);
  const auto log = read_text(data.dir.file("rank" + std::to_string(survivor) + ".log"));
  EXPECT_EQ(status, 1) << log;
  EXPECT_NE(log.find("rank " + std::to_string(victim) + " lost"), std::string::npos) << log;
  // The survivor learnt of the loss from an event (its collective failed, or rank 0's store
  // went away with it), not from the 20 s heartbeat timeout that bounds a rank that hangs.
  EXPECT_TRUE(log.find("a collective failed") != std::string::npos ||
              log.find("stopped answering") != std::string::npos)
      << log;
  EXPECT_EQ(log.find("it died or hangs"), std::string::npos) << log;
}

TEST(DistributedTraining, KilledRankEndsTheOtherWithAnErrorNamingIt) {
  expect_the_survivor_names_the_lost_rank(1);
  expect_the_survivor_names_the_lost_rank(0);
}

// Issue 21 item 6: under `--nproc`, a stopped rank left the launcher waiting for ever and a
// killed one made it exit 137. Either ends the world with status 1, naming the rank.
void expect_the_launcher_ends_the_world(int signal) {
  TinyData data(40);
  const auto log = data.dir.file("launcher.log");
  auto argv =
      split_words(std::string(IMRAM_BINARY) + " --threads 1 train --nproc 2 --data " + data.data() + tiny_model() +
                  " --batch-size 10 --epochs 1000 --val-split none --out " + data.dir.file("run"));
  auto launcher = spawn(argv, {{"IMRAM_DIST_HEARTBEAT_TIMEOUT", "5"}}, log);
  ASSERT_TRUE(wait_for_steps(data, 3)) << read_text(log);
  // "imram: --nproc: started 2 ranks (pids A B), ..."
  const auto said = read_text(log);
  const auto at = said.find("started 2 ranks (pids ");
  ASSERT_NE(at, std::string::npos) << said;
  const auto pids = split_words(said.substr(at + 22, said.find(')', at) - at - 22));
  ASSERT_EQ(pids.size(), 2u) << said;
  const pid_t victim = pid_t(std::stol(pids[1]));
  ::kill(victim, signal);
  const auto status = wait_for(launcher, 120);
  ::kill(victim, SIGKILL);  // if the launcher left it behind (a stopped rank is no child of ours)
  const auto output = read_text(log);
  EXPECT_EQ(status, 1) << output;
  EXPECT_NE(output.find("rank 1 (pid " + pids[1] + ")"), std::string::npos) << output;
}

TEST(Launcher, AKilledRankEndsTheWorldWithStatusOne) { expect_the_launcher_ends_the_world(SIGKILL); }

TEST(Launcher, AStoppedRankEndsTheWorldWithStatusOne) { expect_the_launcher_ends_the_world(SIGSTOP); }

}  // namespace
