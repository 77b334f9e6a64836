// The commands users run, over the configurations users have: every mode x K = 1..4 x
// raw_feature_norm x memory re-normalisation, through `imram score`, `eval`, `explain`, `search`
// (exhaustive and two-stage, by text and by image) and one validated `train` epoch, each number
// against the literal oracle (engine/reference_scorer.h) to 1e-5.
//
// The commands run on two threads: the engine splits a block's items over threads, and what a
// worker thread does differently (its own autograd mode, say) is seen nowhere else. Each command
// reports the engine routes it took (IMRAM_ENGINE_ROUTES), and each mode's sweep must reach every
// route the engine has.
//
// How the product is sampled (one instance per mode; the commands cost a process each):
//  - `score`: all 40 cells (K x 5 norms x re-normalisation), each on two of the five gallery
//    shapes, the pair moving through the shapes cell by cell (every shape meets every K);
//  - `eval`, `explain`, `search`, `train`: one cell per K, its norm and re-normalisation moving
//    through the list with K (all five norms and both settings appear among a mode's cells and
//    across the modes).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "cli/cli_runner.h"
#include "imram/data/npy.h"
#include "imram/data/precomp_dataset.h"
#include "imram/engine/encoding.h"
#include "imram/engine/matching.h"
#include "imram/engine/reference_scorer.h"
#include "imram/metrics/recall.h"
#include "imram/model/model_dir.h"
#include "imram/model/tensor_io.h"
#include "npy_tensor.h"
#include "test_util.h"

namespace {

using imram::ImramMode;
using imram::RawFeatureNorm;

constexpr double kTolerance = 1e-5;
constexpr std::int64_t kRegions = 12, kFeatureDim = 10;

const std::vector<RawFeatureNorm> kNorms = {RawFeatureNorm::ClippedL2Norm, RawFeatureNorm::L2Norm,
                                            RawFeatureNorm::Clipped, RawFeatureNorm::NoNorm, RawFeatureNorm::Softmax};

struct Cell {
  ImramMode mode;
  int steps;
  RawFeatureNorm norm;
  bool imram_norm;
  std::string name() const {
    return imram::to_string(mode) + " K=" + std::to_string(steps) + " " + imram::to_string(norm) +
           (imram_norm ? " imram_norm" : "");
  }
};

// Two worker threads where the machine has them (the CLI refuses more threads than cores).
std::string thread_option() {
  return "--threads " + std::to_string(std::min(2u, std::max(1u, std::thread::hardware_concurrency())));
}

std::string quoted(const std::string& text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// A dataset, the random models of one mode's cells, and the commands run against both.
class Sweep {
 public:
  Sweep() {
    const auto made = imram::test::imram_cli("synth --out " + dir_.file("data") +
                                             " --seed 5 --train 20 --dev 10 --test 10 --regions " +
                                             std::to_string(kRegions) + " --feat-dim " + std::to_string(kFeatureDim));
    if (made.status != 0) throw std::runtime_error("imram synth failed: " + made.output);
    vocabulary_ = imram::Vocabulary::from_file(dir_.file("data/vocab.json"));
    test_captions_ = imram::PrecompSplit::open(dir_.file("data"), "test").captions();
  }

  std::string dir(const std::string& name) const { return dir_.file(name); }

  // A random model of `cell`, saved where the commands read it. The memory layers are scaled up
  // so that the gates do not all sit near 1/2 (a random layer's pre-activations are small).
  imram::Model model(const Cell& cell, std::uint64_t seed, const std::string& name) {
    imram::ModelConfig config;
    config.mode = cell.mode;
    config.iteration_steps = cell.steps;
    config.raw_feature_norm = cell.norm;
    config.imram_norm = cell.imram_norm;
    config.embed_size = 16;
    config.word_dim = 8;
    config.img_dim = kFeatureDim;
    config.global_head = 8;
    imram::Model model;
    model.vocabulary = vocabulary_;
    config.vocab_size = vocabulary_.size();
    torch::manual_seed(std::int64_t(seed));
    model.net = imram::ImramModel(config);
    model.net->eval();
    torch::NoGradGuard no_grad;
    for (auto* layer : {&model.net->linear_t2i, &model.net->gate_t2i, &model.net->linear_i2t, &model.net->gate_i2t})
      (*layer)->weight.mul_(4);
    imram::save_model(dir_.file(name), model);
    return model;
  }

  // Runs one command for `cell`, the routes it takes appended to the sweep's log. `error` is
  // empty when it exits 0, else its status and what it printed.
  struct Outcome {
    std::string output, error;
  };
  Outcome run(const std::string& arguments, const Cell& cell) {
    const auto result =
        imram::test::run_process({"/bin/sh", "-c", std::string(IMRAM_BINARY) + " " + thread_option() + " " + arguments},
                                 {{"IMRAM_ENGINE_ROUTES", dir_.file("routes.jsonl")}});
    if (result.status == 0) return {result.output, ""};
    failed_cells_.insert(cell.name());
    return {result.output, "exit " + std::to_string(result.status) + ": " + result.output};
  }

  // The routes every command of the sweep reported, with how many blocks took each.
  std::map<std::string, std::int64_t> routes_taken() const {
    std::map<std::string, std::int64_t> taken;
    std::ifstream in(dir_.file("routes.jsonl"));
    std::string line;
    while (std::getline(in, line)) {
      const auto report = nlohmann::json::parse(line);
      for (const auto& [route, count] : report.at("routes").items()) taken[route] += count.get<std::int64_t>();
    }
    return taken;
  }

  const std::set<std::string>& failed_cells() const { return failed_cells_; }
  const std::vector<std::string>& test_captions() const { return test_captions_; }

 private:
  imram::test::TempDir dir_;
  imram::Vocabulary vocabulary_;
  std::vector<std::string> test_captions_;
  std::set<std::string> failed_cells_;
};

// One input of `imram score`: random region features and caption texts.
struct Shape {
  std::string name;
  torch::Tensor features;  // (N, R, D)
  std::vector<std::string> captions;
  std::size_t memory_budget_mb = 1024;
};

// The galleries `score` meets: one image and one caption of one word, odd and even counts, more
// captions than a block holds (lengths from one word to the longest, a 1 MB budget), and images of
// many regions against one long caption (more than 64 query rows that project their attended
// context need more regions than (K - 1) x the caption's words).
std::vector<Shape> gallery_shapes(const std::vector<std::string>& captions) {
  torch::manual_seed(77);
  std::vector<std::string> words;
  for (const auto& caption : captions) {
    std::istringstream in(caption);
    for (std::string word; in >> word;) words.push_back(word);
  }
  const auto caption_of = [&](std::size_t length, std::size_t offset) {
    std::string text;
    for (std::size_t i = 0; i < length; ++i) text += (i ? " " : "") + words[(offset + i) % words.size()];
    return text;
  };
  std::vector<Shape> shapes;
  shapes.push_back({"1 image x 1 one-word caption", torch::rand({1, kRegions, kFeatureDim}), {caption_of(1, 3)}});
  shapes.push_back({"5 images x 7 captions", torch::rand({5, kRegions, kFeatureDim}),
                    std::vector<std::string>(captions.begin(), captions.begin() + 7)});
  shapes.push_back({"4 images x 6 captions", torch::rand({4, kRegions, kFeatureDim}),
                    std::vector<std::string>(captions.begin() + 7, captions.begin() + 13)});
  Shape many{"6 images x 150 captions of 1 to 80 words, 1 MB blocks", torch::rand({6, kRegions, kFeatureDim}), {}, 1};
  for (std::size_t j = 0; j < 150; ++j) many.captions.push_back(caption_of(1 + (j * 37) % 80, j));
  shapes.push_back(many);
  shapes.push_back(
      {"2 images of 150 regions x 1 caption of 70 words", torch::rand({2, 150, kFeatureDim}), {caption_of(70, 5)}});
  return shapes;
}

// Which encoded items come from a float16 store, rounded as it keeps them: the engine scores
// what the store holds (the gallery, and an image query taken from it), a text query as encoded.
struct Rounded {
  bool images = false, captions = false;
};

torch::Tensor oracle_scores(imram::Model& model, const torch::Tensor& features,
                            const std::vector<std::string>& captions, Rounded rounded = {}) {
  torch::NoGradGuard no_grad;
  const auto as_stored = [](const torch::Tensor& x) { return x.to(torch::kHalf).to(torch::kFloat32); };
  auto images = model.net->encode_images(features);
  if (rounded.images) images.regions = as_stored(images.regions);
  const auto ids = imram::encode_caption_texts(*model.vocabulary, captions, "captions");
  auto encoded = imram::encode_caption_ids(*model.net, ids);
  if (rounded.captions) encoded.words = as_stored(encoded.words);
  return imram::reference_score_pairs(*model.net, images, encoded).total.to(torch::kFloat64);
}

torch::Tensor split_features(const imram::PrecompSplit& split, std::int64_t images) {
  return imram::tensor_view(split.features()).narrow(0, 0, images).clone();
}

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path);
  for (const auto& line : lines) out << line << "\n";
}

nlohmann::json json_of(const std::string& output) {
  // The JSON line is the last line; progress and notes may come before it.
  const auto end = output.find_last_not_of('\n');
  const auto start = output.rfind('\n', end);
  return nlohmann::json::parse(output.substr(start == std::string::npos ? 0 : start + 1, end + 1));
}

// `imram search --json`'s results against the oracle's column (text query) or row (image query):
// every score to the tolerance, and the ranking the oracle's where the scores are apart by more
// than it.
void expect_search_matches(const nlohmann::json& answer, const torch::Tensor& oracle_line, const std::string& key,
                           std::size_t expected_results, const std::string& what) {
  const auto& results = answer.at("results");
  ASSERT_EQ(results.size(), expected_results) << what;
  double previous = 1e300;
  for (const auto& hit : results) {
    const auto item = hit.at(key).get<std::int64_t>();
    const double score = hit.at("score").get<double>();
    EXPECT_NEAR(score, oracle_line[item].item<double>(), kTolerance) << what << ", " << key << " " << item;
    EXPECT_LE(score, previous + kTolerance) << what << ": results out of order";
    previous = score;
  }
}

class ConfigurationSweep : public ::testing::TestWithParam<ImramMode> {};

TEST_P(ConfigurationSweep, EveryCommandAgreesWithTheOracle) {
  Sweep sweep;
  const auto shapes = gallery_shapes(sweep.test_captions());
  const auto shape_file = [&](std::size_t s, const std::string& extension) {
    return sweep.dir("shape" + std::to_string(s) + extension);
  };
  for (std::size_t s = 0; s < shapes.size(); ++s) {
    imram::save_npy_tensor(shape_file(s, ".npy"), shapes[s].features);
    write_lines(shape_file(s, ".txt"), shapes[s].captions);
  }
  const auto model_dir = sweep.dir("model"), data_dir = sweep.dir("data");

  // score: every cell, two shapes each.
  std::size_t index = 0;
  for (int steps = 1; steps <= 4; ++steps)
    for (const auto norm : kNorms)
      for (const bool imram_norm : {false, true}) {
        const Cell cell{GetParam(), steps, norm, imram_norm};
        auto model = sweep.model(cell, 100 + index, "model");
        for (const auto s : {index % shapes.size(), (index + 1) % shapes.size()}) {
          const auto& shape = shapes[s];
          const auto what = cell.name() + ", score, " + shape.name;
          const auto out = sweep.dir("scores.npy");
          const auto scored = sweep.run("score --model " + model_dir + " --images " + shape_file(s, ".npy") +
                                            " --captions " + shape_file(s, ".txt") + " --out " + out +
                                            " --memory-budget " + std::to_string(shape.memory_budget_mb),
                                        cell);
          if (!scored.error.empty()) {
            ADD_FAILURE() << what << ": " << scored.error;
            continue;
          }
          const auto scores = imram::test::load_npy_tensor(out);
          const auto oracle = oracle_scores(model, shape.features, shape.captions);
          ASSERT_EQ(scores.sizes(), oracle.sizes()) << what;
          EXPECT_LE(max_difference(scores, oracle), kTolerance) << what;
        }
        ++index;
      }

  // eval, explain, search, train: one cell per K.
  const auto test = imram::PrecompSplit::open(data_dir, "test");
  const auto dev = imram::PrecompSplit::open(data_dir, "dev");
  const auto dataset = " --data " + data_dir + " --split test";
  for (int steps = 1; steps <= 4; ++steps) {
    const auto position = std::size_t(int(GetParam()) * 4 + steps - 1);
    const Cell cell{GetParam(), steps, kNorms[position % kNorms.size()], position % 2 == 1};
    auto model = sweep.model(cell, 1000 + position, "model");
    const auto oracle = oracle_scores(model, split_features(test, test.num_images()), test.captions());

    // eval: the whole matrix, and the metrics of it.
    const auto sims = sweep.dir("sims.npy");
    const auto evaluated = sweep.run("eval --model " + model_dir + dataset + " --json --save-sims " + sims, cell);
    if (evaluated.error.empty()) {
      // The matrix against the oracle; the metrics it prints are those of the matrix it wrote.
      const auto saved = imram::test::load_npy_tensor(sims).to(torch::kFloat64).contiguous();
      EXPECT_LE(max_difference(saved, oracle), kTolerance) << cell.name() << ", eval";
      const auto expected =
          imram::compute_metrics(saved.data_ptr<double>(), saved.size(0), saved.size(1), test.captions_per_image(), 1);
      EXPECT_DOUBLE_EQ(json_of(evaluated.output).at("rsum").get<double>(), expected.rsum) << cell.name() << ", eval";
    } else {
      ADD_FAILURE() << cell.name() << ", eval: " << evaluated.error;
    }

    // explain: the step similarities of one pair, direction by direction.
    const auto explained = sweep.run("explain --model " + model_dir + dataset + " --image 3 --caption 7 --json", cell);
    if (explained.error.empty()) {
      torch::NoGradGuard no_grad;
      const auto images = model.net->encode_images(split_features(test, 4).narrow(0, 3, 1));
      const auto captions = imram::encode_caption_ids(
          *model.net, imram::encode_caption_texts(*model.vocabulary, {test.captions()[7]}, "caption"));
      const auto reference = imram::reference_score_pairs(*model.net, images, captions);
      const auto explanation = json_of(explained.output);
      EXPECT_NEAR(explanation.at("score").get<double>(), oracle[3][7].item<double>(), kTolerance) << cell.name();
      for (const auto& direction : explanation.at("directions")) {
        const auto& expected = direction.at("direction") == "text" ? reference.steps_t2i : reference.steps_i2t;
        ASSERT_TRUE(expected.defined()) << cell.name() << ": explain shows a direction the mode lacks";
        ASSERT_EQ(direction.at("steps").size(), std::size_t(steps)) << cell.name();
        for (int k = 0; k < steps; ++k)
          EXPECT_NEAR(direction.at("steps")[k].at("similarity").get<double>(), expected[k][0][0].item<double>(),
                      kTolerance)
              << cell.name() << ", explain, " << direction.at("direction") << " step " << k + 1;
      }
    } else {
      ADD_FAILURE() << cell.name() << ", explain: " << explained.error;
    }

    // search of the split itself (exhaustive), by text and by image.
    const std::int64_t query_caption = 11, query_image = 6;
    const auto query = " --query " + quoted(test.captions()[std::size_t(query_caption)]);
    const auto exhaustive = "search --model " + model_dir + dataset + " --cache '' --json";
    const auto by_text = sweep.run(exhaustive + " --top 10" + query, cell);
    if (by_text.error.empty())
      expect_search_matches(json_of(by_text.output), oracle.select(1, query_caption), "image", 10,
                            cell.name() + ", search by text");
    else
      ADD_FAILURE() << cell.name() << ", search by text: " << by_text.error;
    const auto by_image = sweep.run(exhaustive + " --top 50 --image " + std::to_string(query_image), cell);
    if (by_image.error.empty())
      expect_search_matches(json_of(by_image.output), oracle.select(0, query_image), "caption", 50,
                            cell.name() + ", search by image");
    else
      ADD_FAILURE() << cell.name() << ", search by image: " << by_image.error;

    // Two-stage search of an index: a float32 store with memory halves, and a float16 store (the
    // default). Not float16 halves: rounded, they are no longer the oracle's products.
    for (const bool half : {false, true}) {
      const auto index_dir = sweep.dir(half ? "index16" : "index32");
      const auto what = cell.name() + (half ? ", float16 index" : ", float32 index with memory halves");
      const auto built = sweep.run("index build --quiet --model " + model_dir + dataset + " --out " + index_dir +
                                       (half ? " --store float16" : " --store float32 --memory-halves"),
                                   cell);
      if (!built.error.empty()) {
        ADD_FAILURE() << what << ", index build: " << built.error;
        continue;
      }
      const auto gallery = split_features(test, test.num_images());
      const auto text_query = half ? oracle_scores(model, gallery, test.captions(), {true, false}) : oracle;
      const auto image_query = half ? oracle_scores(model, gallery, test.captions(), {true, true}) : oracle;
      // `imram search --index` with `options`: its `top` results, each scored as the oracle does.
      const auto search_matches = [&](const std::string& options, const torch::Tensor& oracle_line, const char* key,
                                      std::size_t top, const std::string& label) {
        const auto searched = sweep.run(
            "search --index " + index_dir + " " + options + " --top " + std::to_string(top) + " --json", cell);
        if (searched.error.empty())
          expect_search_matches(json_of(searched.output), oracle_line, key, top, what + ", " + label);
        else
          ADD_FAILURE() << what << ", " << label << ": " << searched.error;
      };
      const auto image_option = " --image " + std::to_string(query_image);
      search_matches("--shortlist 4 --prefilter 0" + query, text_query.select(1, query_caption), "image", 4, "by text");
      search_matches("--shortlist 20 --prefilter 0" + image_option, image_query.select(0, query_image), "caption", 20,
                     "by image");
      // The default cascade with its coded first step (the index's codes, a codebook coarser than
      // the fragments): whichever items it keeps, their scores are the oracle's.
      search_matches("--shortlist 2 --prefilter " + std::to_string(test.num_images()) + " --step1 " +
                         std::to_string(test.num_images() / 2) + query,
                     text_query.select(1, query_caption), "image", 2, "coded cascade by text");
      search_matches("--shortlist 5 --prefilter " + std::to_string(test.num_captions()) + " --step1 " +
                         std::to_string(test.num_captions() / 2) + image_option,
                     image_query.select(0, query_image), "caption", 5, "coded cascade by image");
    }

    // One validated training epoch: it must finish, and its validation must be the oracle's.
    const auto run_dir = sweep.dir("run" + std::to_string(steps));
    const auto trained_run =
        sweep.run("train --quiet --data " + data_dir + " --out " + run_dir + " --mode " + imram::to_string(cell.mode) +
                      " --steps " + std::to_string(steps) + " --raw-feature-norm " + imram::to_string(cell.norm) +
                      (cell.imram_norm ? " --imram-norm" : "") +
                      " --embed-size 16 --word-dim 8 --batch-size 10 --epochs 1 --seed 3",
                  cell);
    if (!trained_run.error.empty()) {
      ADD_FAILURE() << cell.name() << ", train: " << trained_run.error;
      continue;
    }
    // The validation is `eval` of the model it kept, and that is the oracle's matrix.
    std::ifstream log(run_dir + "/metrics.jsonl");
    std::optional<double> logged;
    for (std::string line; std::getline(log, line);) {
      const auto parsed = nlohmann::json::parse(line);
      if (parsed.value("type", "") == "val") logged = parsed.at("rsum").get<double>();
    }
    ASSERT_TRUE(logged.has_value()) << cell.name() << ": no validation line in metrics.jsonl";
    const auto best = sweep.run(
        "eval --model " + run_dir + "/best --data " + data_dir + " --split dev --json --save-sims " + sims, cell);
    if (!best.error.empty()) {
      ADD_FAILURE() << cell.name() << ", eval of the trained model: " << best.error;
      continue;
    }
    EXPECT_DOUBLE_EQ(*logged, json_of(best.output).at("rsum").get<double>()) << cell.name() << ", train validation";
    auto trained = imram::load_model(run_dir + "/best");
    EXPECT_LE(max_difference(imram::test::load_npy_tensor(sims),
                             oracle_scores(trained, split_features(dev, dev.num_images()), dev.captions())),
              kTolerance)
        << cell.name() << ", the trained model";
  }

  std::ostringstream failed;
  for (const auto& cell : sweep.failed_cells()) failed << "\n  " << cell;
  EXPECT_TRUE(sweep.failed_cells().empty()) << "cells whose commands failed:" << failed.str();

  // Every route of the engine, reached by this mode's commands.
  const auto taken = sweep.routes_taken();
  std::ostringstream report;
  for (const auto& [route, count] : taken) report << "\n  " << route << ": " << count << " calls";
  std::cout << "[ sweep ] " << imram::to_string(GetParam()) << " reached" << report.str() << "\n";
  for (const auto route : imram::all_engine_routes())
    EXPECT_TRUE(taken.count(imram::to_string(route))) << imram::to_string(route) << " was reached by no command";
}

INSTANTIATE_TEST_SUITE_P(Modes, ConfigurationSweep,
                         ::testing::Values(ImramMode::Text, ImramMode::Image, ImramMode::Full),
                         [](const auto& info) { return imram::to_string(info.param); });

}  // namespace
