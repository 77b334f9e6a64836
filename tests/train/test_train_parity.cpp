// Training-step parity with the authors' code (fixture train_full_k2): scores, loss, gradients
// before clipping, and weights after clip + one Adam step. Tolerances from the fixture README:
// loss 1e-5 relative; gradients and weights 1e-5 + 1e-4 |expected|.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "imram/model/model_dir.h"
#include "imram/model/tensor_io.h"
#include "imram/train/loss.h"
#include "imram/train/train_step.h"
#include "npy_tensor.h"
#include "test_device.h"
#include "test_util.h"

namespace {

using imram::test::load_npy_tensor;

imram::Model on_test_device(imram::Model model) {
  model.net->to(imram::test::test_device());
  return model;
}

struct TrainFixture {
  std::string dir = imram::test::testdata("reference/train_full_k2");
  imram::Model model = on_test_device(imram::import_reference_model(dir));
  imram::Batch batch{load_npy_tensor(dir + "/inputs/images.npy"), load_npy_tensor(dir + "/inputs/captions.npy"),
                     load_npy_tensor(dir + "/inputs/lengths.npy")};
};

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const auto a = actual.to(torch::kCPU, torch::kFloat64), e = expected.to(torch::kFloat64);
  const auto excess = ((a - e).abs() - (1e-5 + 1e-4 * e.abs())).max().item<double>();
  EXPECT_LE(excess, 0.0) << what << ": max |diff| " << (a - e).abs().max().item<double>();
}

TEST(TrainStepParity, ScoresLossGradientsAndAdamStepMatchTheAuthors) {
  TrainFixture f;
  // Only inspect the gradients: an optimizer with lr 0 leaves the weights as they are.
  auto probe = imram::make_optimizer(*f.model.net, 0.0);
  auto result = imram::train_step(*f.model.net, probe, f.batch, {0.2, true, 0.0});
  const double expected_loss = load_npy_tensor(f.dir + "/expected/loss.npy").item<double>();
  EXPECT_NEAR(result.loss, expected_loss, 1e-5 * std::abs(expected_loss));
  EXPECT_LE((result.scores.to(torch::kCPU, torch::kFloat64) - load_npy_tensor(f.dir + "/expected/scores.npy"))
                .abs()
                .max()
                .item<double>(),
            1e-5);
  EXPECT_NEAR(result.grad_norm, 11.027562141418457, 1e-4 * 11.03);
  for (const auto& item : f.model.net->named_parameters())
    expect_close(item.value().grad(), load_npy_tensor(f.dir + "/expected/grads/" + item.key() + ".npy"),
                 "grad of " + item.key());

  TrainFixture g;
  auto adam = imram::make_optimizer(*g.model.net, 2e-4);
  imram::train_step(*g.model.net, adam, g.batch, {0.2, true, 2.0});
  for (const auto& item : g.model.net->named_parameters())
    expect_close(item.value(), load_npy_tensor(g.dir + "/expected/weights_after_step/" + item.key() + ".npy"),
                 "weight " + item.key());
}

// Adam's first step hardly depends on a common scale of all gradients, so the weights after a
// step cannot tell a clip at 2 x grad_clip from one at grad_clip: the clipped norm itself can.
TEST(TrainStep, ClipsTheGradientNormToExactlyGradClip) {
  TrainFixture f;
  auto probe = imram::make_optimizer(*f.model.net, 0.0);
  for (const double clip : {2.0, 0.5}) {
    const auto result = imram::train_step(*f.model.net, probe, f.batch, {0.2, true, clip});
    EXPECT_NEAR(result.grad_norm, 11.027562141418457, 1e-4 * 11.03) << "the norm before clipping";
    double squares = 0;
    for (const auto& p : f.model.net->parameters()) squares += p.grad().pow(2).sum().item<double>();
    EXPECT_NEAR(std::sqrt(squares), clip, 1e-4 * clip) << "clip " << clip;
  }
  // A clip above the norm leaves the gradients alone.
  imram::train_step(*f.model.net, probe, f.batch, {0.2, true, 100.0});
  double squares = 0;
  for (const auto& p : f.model.net->parameters()) squares += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(squares), 11.027562141418457, 1e-4 * 11.03);
}

TEST(ContrastiveLoss, HardestNegativeOrAllNegatives) {
  // Image 0 against its captions: positive 0.5, negatives 0.6 and 0.55 violate the margin 0.2 by
  // 0.3 and 0.25; no other pair violates it in either direction.
  const auto scores = torch::tensor({{0.5, 0.6, 0.55}, {0.0, 0.9, 0.0}, {0.0, 0.0, 0.9}}, torch::kFloat64);
  EXPECT_NEAR(imram::contrastive_loss(scores, 0.2, true).item<double>(), 0.3, 1e-12);
  EXPECT_NEAR(imram::contrastive_loss(scores, 0.2, false).item<double>(), 0.55, 1e-12);
}

}  // namespace
