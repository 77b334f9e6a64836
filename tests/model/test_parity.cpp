// Parity with the authors' PyTorch code: the fixtures in tests/testdata/reference were produced
// by it (see that folder's README). Tolerances are the README's: 1e-5 absolute for embeddings
// and similarities.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "imram/engine/reference_scorer.h"
#include "imram/engine/scorer.h"
#include "imram/model/model_dir.h"
#include "imram/model/tensor_io.h"
#include "imram/model/text_encoder.h"
#include "npy_tensor.h"
#include "test_device.h"
#include "test_util.h"

namespace {

using imram::test::load_npy_tensor;

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a.to(torch::kCPU, torch::kFloat64) - b.to(torch::kCPU, torch::kFloat64)).abs().max().item<double>();
}

struct Fixture {
  std::string dir;
  imram::Model model;
  imram::EncodedImages images;
  imram::EncodedCaptions captions;
  explicit Fixture(const std::string& name) : dir(imram::test::testdata("reference/" + name)) {
    model = imram::import_reference_model(dir);
    model.net->to(imram::test::test_device());
    torch::NoGradGuard no_grad;
    images = model.net->encode_images(load_npy_tensor(dir + "/inputs/images.npy"));
    captions = model.net->encode_captions(load_npy_tensor(dir + "/inputs/captions.npy"),
                                          load_npy_tensor(dir + "/inputs/lengths.npy"));
  }
  torch::Tensor expected(const std::string& name) const { return load_npy_tensor(dir + "/expected/" + name + ".npy"); }
};

class ScoringParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ScoringParity, EncodersMatchTheAuthorsWithin1e5) {
  Fixture f(GetParam());
  EXPECT_LE(max_abs_diff(f.images.regions, f.expected("img_emb")), 1e-5);
  EXPECT_LE(max_abs_diff(f.captions.words, f.expected("cap_emb")), 1e-5);
}

// A search query is one caption, encoded on its own (the recurrence as matrix-vector products).
TEST_P(ScoringParity, OneCaptionAtATimeEncodesAsTheAuthors) {
  Fixture f(GetParam());
  torch::NoGradGuard no_grad;
  const auto ids = load_npy_tensor(f.dir + "/inputs/captions.npy"),
             lengths = load_npy_tensor(f.dir + "/inputs/lengths.npy");
  const auto expected = f.expected("cap_emb");
  for (std::int64_t j = 0; j < ids.size(0); ++j) {
    const auto length = lengths[j].item<std::int64_t>();
    const auto one = f.model.net->encode_captions(ids.narrow(0, j, 1).narrow(1, 0, length), lengths.narrow(0, j, 1));
    EXPECT_LE(max_abs_diff(one.words[0], expected[j].narrow(0, 0, length)), 1e-5) << "caption " << j;
  }
}

// The one-caption recurrence against LibTorch's packed GRU, for shapes the fixtures lack.
TEST(TextEncoder, OneCaptionEqualsItsBatchForEveryLayoutOfTheGru) {
  torch::NoGradGuard no_grad;
  for (const int layers : {1, 2})
    for (const bool bidirectional : {false, true}) {
      imram::ModelConfig config;
      config.vocab_size = 30;
      config.word_dim = 6;
      config.embed_size = 10;
      config.num_layers = layers;
      config.bi_gru = bidirectional;
      torch::manual_seed(layers * 2 + int(bidirectional));
      imram::TextEncoder encoder(config);
      encoder->eval();
      const auto ids = torch::randint(1, 30, {3, 9}, torch::kInt64);
      const auto lengths = torch::tensor({9, 4, 6}, torch::kInt64);
      const auto batch = encoder->forward(ids, lengths);
      for (std::int64_t j = 0; j < 3; ++j) {
        const auto one = encoder->forward(ids.narrow(0, j, 1), lengths.narrow(0, j, 1));
        EXPECT_LE(max_abs_diff(one[0], batch[j]), 1e-6) << layers << " layers, bidirectional " << bidirectional;
      }
    }
}

TEST_P(ScoringParity, EngineStepsAndScoresMatchTheAuthorsWithin1e5) {
  Fixture f(GetParam());
  torch::NoGradGuard no_grad;
  for (std::int64_t block : {0, 1, 3}) {
    imram::ScoreOptions options;
    options.keep_steps = true;
    options.image_block = block;
    options.caption_block = block ? block + 1 : 0;
    const auto scores = imram::score_pairs(*f.model.net, f.images, f.captions, options);
    EXPECT_LE(max_abs_diff(scores.total, f.expected("sims")), 1e-5) << "block " << block;
    if (f.model.config().uses_text_direction()) {
      EXPECT_LE(max_abs_diff(scores.steps_t2i, f.expected("sims_steps_t2i")), 1e-5);
    }
    if (f.model.config().uses_image_direction()) {
      EXPECT_LE(max_abs_diff(scores.steps_i2t, f.expected("sims_steps_i2t")), 1e-5);
    }
  }
}

TEST_P(ScoringParity, OracleMatchesTheAuthorsWithin1e5) {
  Fixture f(GetParam());
  torch::NoGradGuard no_grad;
  const auto scores = imram::reference_score_pairs(*f.model.net, f.images, f.captions);
  EXPECT_LE(max_abs_diff(scores.total, f.expected("sims")), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(ReferenceFixtures, ScoringParity,
                         ::testing::Values("text_k3_norm", "image_k3", "full_k2_lambda4"));

}  // namespace
