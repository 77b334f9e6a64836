// explain's numbers are the engine's: its step similarities add up to the score the engine
// gives the pair, in every mode, and its attention rows are distributions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "cli/cli_runner.h"
#include "imram/data/precomp_dataset.h"
#include "imram/engine/encoding.h"
#include "imram/engine/explain.h"
#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "imram/model/tensor_io.h"
#include "npy_tensor.h"
#include "test_util.h"

namespace {

imram::Model small_model(imram::Vocabulary vocabulary, imram::ImramMode mode) {
  imram::ModelConfig config;
  config.mode = mode;
  config.embed_size = 8;
  config.word_dim = 4;
  config.img_dim = 16;
  config.iteration_steps = 3;
  imram::Model model;
  model.vocabulary = std::move(vocabulary);
  config.vocab_size = model.vocabulary->size();
  torch::manual_seed(3);
  model.net = imram::ImramModel(config);
  return model;
}

class Explain : public ::testing::TestWithParam<imram::ImramMode> {};

TEST_P(Explain, StepSimilaritiesAddUpToTheEngineScore) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 2, 2, 4, 6, 16);
  auto model = small_model(imram::Vocabulary::from_file(dir.file("data/vocab.json")), GetParam());
  const auto split = imram::PrecompSplit::open(dir.file("data"), "test");
  const std::string caption = split.captions()[3] + " zebra";  // an unknown word as well

  torch::NoGradGuard no_grad;
  const auto images = imram::encode_image_file(*model.net, split.features());
  const auto captions =
      imram::encode_caption_ids(*model.net, imram::encode_caption_texts(*model.vocabulary, {caption}, "caption"));
  const auto scores = imram::score_pairs(*model.net, images, captions).total;
  for (std::int64_t image = 0; image < split.num_images(); ++image) {
    const auto explanation = imram::explain_pair(model, split.image_features(image), split.num_regions(), caption);
    const auto expected_directions = GetParam() == imram::ImramMode::Full ? 2u : 1u;
    ASSERT_EQ(explanation.directions.size(), expected_directions);
    double sum = 0;
    for (const auto& direction : explanation.directions) {
      ASSERT_EQ(direction.steps.size(), 3u);
      const std::size_t queries = direction.query == "words" ? explanation.tokens.size() : 6u;
      const std::size_t contexts = direction.query == "words" ? 6u : explanation.tokens.size();
      for (std::size_t k = 0; k < direction.steps.size(); ++k) {
        const auto& step = direction.steps[k];
        sum += step.similarity;
        ASSERT_EQ(step.attention.size(), queries);
        for (const auto& row : step.attention) {
          ASSERT_EQ(row.size(), contexts);
          double total = 0;
          for (float weight : row) total += weight;
          EXPECT_NEAR(total, 1.0, 1e-5);
        }
        EXPECT_EQ(step.gate_mean.size(), k + 1 < direction.steps.size() ? queries : 0u);
        for (float gate : step.gate_mean) EXPECT_TRUE(gate > 0 && gate < 1);
      }
    }
    EXPECT_NEAR(sum, scores[image][0].item<double>(), 1e-5) << "image " << image;
    EXPECT_NEAR(explanation.score, sum, 1e-9);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, Explain,
                         ::testing::Values(imram::ImramMode::Text, imram::ImramMode::Image, imram::ImramMode::Full),
                         [](const auto& info) { return imram::to_string(info.param); });

TEST(Explain, FlagsUnknownWordsAndKeepsTheTokensInOrder) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 2, 2, 2, 6, 16);
  auto model = small_model(imram::Vocabulary::build({"a red circle"}, 1), imram::ImramMode::Text);
  const auto split = imram::PrecompSplit::open(dir.file("data"), "test");
  const auto explanation = imram::explain_pair(model, split.image_features(0), 6, "A red Zebroid circle");
  std::vector<std::string> texts;
  std::vector<bool> known;
  for (const auto& token : explanation.tokens) {
    texts.push_back(token.text);
    known.push_back(token.known);
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"<start>", "a", "red", "zebroid", "circle", "<end>"}));
  EXPECT_EQ(known, (std::vector<bool>{true, true, true, false, true, true}));
  EXPECT_THROW(imram::explain_pair(model, split.image_features(0), 6, "   "), imram::Error);
}

std::string run_imram(const std::string& arguments, int& status) {
  auto result = imram::test::imram_cli("--threads 1 " + arguments);
  status = result.status;
  return result.output;
}

TEST(Explain, CommandSumsToWhatImramScorePrints) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 2, 2, 4, 6, 16);
  auto model = small_model(imram::Vocabulary::from_file(dir.file("data/vocab.json")), imram::ImramMode::Full);
  imram::save_model(dir.file("model"), model);
  int status = 0;
  auto output = run_imram("score --model " + dir.file("model") + " --images " + dir.file("data/test_ims.npy") +
                              " --captions " + dir.file("data/test_caps.txt") + " --out " + dir.file("sims.npy"),
                          status);
  ASSERT_EQ(status, 0) << output;
  const auto sims = imram::test::load_npy_tensor(dir.file("sims.npy"));
  output = run_imram("explain --model " + dir.file("model") + " --data " + dir.file("data") +
                         " --split test --image 1 --caption 7 --json",
                     status);
  ASSERT_EQ(status, 0) << output;
  const auto json = nlohmann::json::parse(output);
  double sum = 0;
  for (const auto& direction : json["directions"])
    for (const auto& step : direction["steps"]) sum += step["similarity"].get<double>();
  EXPECT_NEAR(sum, sims[1][7].item<double>(), 1e-5);

  output = run_imram(
      "explain --model " + dir.file("model") + " --data " + dir.file("data") + " --split test --image 4 --caption 0",
      status);
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("--image 4: out of range"), std::string::npos) << output;
}

}  // namespace
