// Every route of the engine (engine/matching.h: how a block's products run x where the memory's
// context term comes from), forced by name and held against the oracle, on two threads and
// whatever the caller's autograd mode: the shape of a block picks its route, so a test of one
// shape proves one route, and a worker thread runs in its own autograd mode unless the engine
// carries the caller's into it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "imram/engine/matching.h"
#include "imram/engine/reference_scorer.h"
#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "test_util.h"

namespace {

using imram::BlockProducts;
using imram::ContextTerm;
using imram::EngineRoute;
using imram::ImramMode;

imram::ImramModel random_model(ImramMode mode, int steps, imram::RawFeatureNorm norm, bool imram_norm,
                               std::uint64_t seed) {
  imram::ModelConfig config;
  config.mode = mode;
  config.iteration_steps = steps;
  config.raw_feature_norm = norm;
  config.imram_norm = imram_norm;
  config.embed_size = 12;
  config.word_dim = 6;
  config.img_dim = 10;
  config.vocab_size = 40;
  torch::manual_seed(std::int64_t(seed));
  imram::ImramModel model(config);
  torch::NoGradGuard no_grad;
  for (auto* layer : {&model->linear_t2i, &model->gate_t2i, &model->linear_i2t, &model->gate_i2t})
    (*layer)->weight.mul_(4);
  return model;
}

std::int64_t calls_of(EngineRoute route) {
  for (const auto& [taken, count] : imram::engine_route_counts())
    if (taken == route) return count;
  ADD_FAILURE() << imram::to_string(route) << " is not counted";
  return 0;
}

// The engine's threads for the scope of a test: ctest runs the suite with OMP_NUM_THREADS=1.
class TwoThreads {
 public:
  TwoThreads() : before_(torch::get_num_threads()) { torch::set_num_threads(2); }
  ~TwoThreads() { torch::set_num_threads(before_); }

 private:
  int before_;
};

struct Inputs {
  imram::EncodedImages images;
  imram::EncodedCaptions captions;
};

// Ragged captions of 1 to 30 words against 7 images of 9 regions: several blocks of odd sizes.
Inputs random_inputs(imram::ImramModel& model) {
  torch::NoGradGuard no_grad;
  const std::vector<std::int64_t> lengths = {3, 1, 30, 7, 2, 15, 4, 9, 1};
  const auto M = std::int64_t(lengths.size());
  auto ids = torch::randint(4, 40, {M, 30}, torch::kInt64);
  const auto lengths_tensor = torch::tensor(lengths, torch::kInt64);
  ids.masked_fill_(torch::arange(30).unsqueeze(0) >= lengths_tensor.unsqueeze(1), 0);
  return {model->encode_images(torch::rand({7, 9, 10})), model->encode_captions(ids, lengths_tensor)};
}

std::vector<int> steps_of(EngineRoute route) {
  return route.context == ContextTerm::None ? std::vector<int>{1} : std::vector<int>{2, 3, 4};
}

TEST(EngineRoutes, EveryRouteForcedByNameAgreesWithTheOracle) {
  const TwoThreads threads;
  std::map<std::string, int> checked;
  std::uint64_t seed = 1;
  for (const auto route : imram::all_engine_routes())
    for (const auto mode : {ImramMode::Text, ImramMode::Image, ImramMode::Full})
      for (const int steps : steps_of(route))
        for (const bool half : {false, true}) {
          // The tensor path keeps float32 (a float16 store is widened before it): no half case.
          if (half && route.products == BlockProducts::Tensor) continue;
          const bool imram_norm = seed % 2 == 0;
          const auto norm = static_cast<imram::RawFeatureNorm>(seed % 5);
          auto model = random_model(mode, steps, norm, imram_norm, seed++);
          auto inputs = random_inputs(model);
          const auto what = imram::to_string(route) + " " + imram::to_string(mode) + " K=" + std::to_string(steps) +
                            (half ? " float16 images" : "");
          auto oracle_images = inputs.images;
          if (half) {
            inputs.images.regions = inputs.images.regions.to(torch::kHalf);
            oracle_images.regions = inputs.images.regions.to(torch::kFloat32);
          }
          const auto oracle = [&] {
            torch::NoGradGuard no_grad;
            return imram::reference_score_pairs(*model, oracle_images, inputs.captions).total;
          }();
          imram::ScoreOptions options;
          options.route = route;
          options.path =
              route.products == BlockProducts::Tensor ? imram::EnginePath::Tensor : imram::EnginePath::FusedCpu;
          options.image_block = 3;
          options.caption_block = 4;
          // The caller's own mode is left on (the default): scoring must not inherit it.
          const auto before = calls_of(route);
          const auto scored = imram::score_pairs(*model, inputs.images, inputs.captions, options);
          EXPECT_GT(calls_of(route), before) << what << ": the route did not run";
          EXPECT_FALSE(scored.total.requires_grad()) << what;
          EXPECT_LE((scored.total - oracle).abs().max().item<double>(), 1e-5) << what;
          ++checked[imram::to_string(route)];
        }
  // Each route ran in every mode at every K it has.
  for (const auto route : imram::all_engine_routes()) {
    const auto cases = 3 * int(steps_of(route).size()) * (route.products == BlockProducts::Tensor ? 1 : 2);
    EXPECT_EQ(checked[imram::to_string(route)], cases) << imram::to_string(route);
  }
}

// The automatic choice reaches each route from the shape of a block alone.
TEST(EngineRoutes, ShapesChooseTheRoutes) {
  using imram::EnginePath;
  const auto route = [](EnginePath path, std::int64_t rows, std::int64_t fragments, int steps, bool halves) {
    return imram::to_string(imram::choose_route(path, rows, fragments, steps, halves));
  };
  EXPECT_EQ(route(EnginePath::Tensor, 5, 36, 1, false), "tensor/no_memory");
  EXPECT_EQ(route(EnginePath::Tensor, 5, 36, 3, false), "tensor/context_halves");
  EXPECT_EQ(route(EnginePath::FusedCpu, 14, 36, 1, false), "fragments/no_memory");
  EXPECT_EQ(route(EnginePath::FusedCpu, 14, 36, 3, false), "fragments/projected");
  EXPECT_EQ(route(EnginePath::FusedCpu, 14, 36, 3, true), "fragments/context_halves");
  EXPECT_EQ(route(EnginePath::FusedCpu, 36, 14, 3, false), "fragments/context_halves");
  EXPECT_EQ(route(EnginePath::FusedCpu, 64, 14, 2, false), "fragments/context_halves");
  EXPECT_EQ(route(EnginePath::FusedCpu, 65, 14, 2, false), "itemwise/context_halves");
  EXPECT_EQ(route(EnginePath::FusedCpu, 512, 36, 1, false), "itemwise/no_memory");
  EXPECT_EQ(route(EnginePath::FusedCpu, 72, 150, 2, false), "itemwise/projected");
  EXPECT_EQ(route(EnginePath::FusedCpu, 72, 150, 2, true), "itemwise/context_halves");
  EXPECT_EQ(imram::all_engine_routes().size(), 8u);
}

// A route that cannot run as asked says so, naming it, instead of failing inside LibTorch.
TEST(EngineRoutes, ImpossibleRoutesAreRefused) {
  const auto refusal = [](imram::EnginePath path, EngineRoute route, int steps, bool halves) {
    return imram::test::error_of([&] { imram::choose_route(path, 10, 10, steps, halves, route); });
  };
  EXPECT_NE(refusal(imram::EnginePath::Tensor, {BlockProducts::ItemwiseBlas, ContextTerm::ContextHalves}, 3, false)
                .find("itemwise/context_halves is not on the tensor engine path"),
            std::string::npos);
  EXPECT_NE(
      refusal(imram::EnginePath::FusedCpu, {BlockProducts::FragmentKernels, ContextTerm::None}, 3, false).find("K > 1"),
      std::string::npos);
  EXPECT_NE(refusal(imram::EnginePath::FusedCpu, {BlockProducts::FragmentKernels, ContextTerm::ContextHalves}, 1, false)
                .find("needs K > 1"),
            std::string::npos);
  EXPECT_NE(refusal(imram::EnginePath::FusedCpu, {BlockProducts::ItemwiseBlas, ContextTerm::ProjectedAttended}, 3, true)
                .find("context halves are given"),
            std::string::npos);
}

// Gradients are asked for, never inherited: the training step's tensor path gives them (and the
// oracle's), the fused path refuses them by name, and the in-place memory products refuse them
// instead of failing inside LibTorch.
TEST(EngineRoutes, GradientsOnlyWhenAskedFor) {
  const TwoThreads threads;
  auto model = random_model(ImramMode::Full, 3, imram::RawFeatureNorm::ClippedL2Norm, false, 31);
  const auto inputs = random_inputs(model);  // encoded without gradients: only the memory layers get them
  const auto& images = inputs.images;
  imram::ScoreOptions options;
  options.gradients = true;
  const auto scored = imram::score_pairs(*model, images, inputs.captions, options);
  EXPECT_EQ(scored.path, imram::EnginePath::Tensor);
  ASSERT_TRUE(scored.total.requires_grad());
  scored.total.sum().backward();
  ASSERT_TRUE(model->gate_t2i->weight.grad().defined());
  const auto engine_gradient = model->gate_t2i->weight.grad().clone();
  model->zero_grad();
  imram::reference_score_pairs(*model, images, inputs.captions).total.sum().backward();
  EXPECT_LE((engine_gradient - model->gate_t2i->weight.grad()).abs().max().item<double>(), 1e-4);

  options.path = imram::EnginePath::FusedCpu;
  EXPECT_NE(
      imram::test::error_of([&] { imram::score_pairs(*model, images, inputs.captions, options); }).find("no gradients"),
      std::string::npos);

  // Under a caller's NoGradGuard, asking for gradients still gets them.
  {
    torch::NoGradGuard caller;
    options.path = imram::EnginePath::Automatic;
    EXPECT_TRUE(imram::score_pairs(*model, images, inputs.captions, options).total.requires_grad());
  }

  const auto memory = model->text_memory();
  const auto rows = torch::rand({5, 12});
  auto out = torch::empty({5, 24});
  EXPECT_NE(imram::test::error_of([&] {
              memory.products_into(imram::MemoryColumns::Query, rows, out, false);
            }).find("take no gradients"),
            std::string::npos);
  torch::NoGradGuard no_grad;
  memory.products_into(imram::MemoryColumns::Query, rows, out, false);
  EXPECT_LE((out - memory.query_half(rows) + memory.query_bias()).abs().max().item<double>(), 1e-6);
}

}  // namespace
