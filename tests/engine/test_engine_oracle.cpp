// The fast engine against the oracle (a literal transcription of the authors' loop) on random
// models and inputs: every mode, K = 1..4, every raw_feature_norm, re-normalisation on and off,
// ragged captions from 1 to 80 words, odd block sizes, with and without attached memory halves.
// Tolerance 1e-5 absolute.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "imram/engine/matching.h"
#include "imram/engine/reference_scorer.h"
#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "test_device.h"

namespace {

using imram::ImramMode;
using imram::RawFeatureNorm;

struct Case {
  ImramMode mode;
  int steps;
  RawFeatureNorm norm;
  bool imram_norm;
};

imram::ModelConfig small_config(const Case& c) {
  imram::ModelConfig config;
  config.mode = c.mode;
  config.iteration_steps = c.steps;
  config.raw_feature_norm = c.norm;
  config.imram_norm = c.imram_norm;
  config.embed_size = 12;
  config.word_dim = 6;
  config.img_dim = 10;
  config.vocab_size = 40;
  config.lambda_softmax = 9;
  return config;
}

// Every engine path against the oracle, each asked for by name: the fused CPU path (on the CPU),
// the tensor path without gradients, and the tensor path with them (what training
// differentiates). `gate_scale` blows the memory weights up so that the gates saturate
// (pre-activations far beyond +-88).
double max_diff(const Case& c, std::int64_t image_block, std::int64_t caption_block, std::uint64_t seed,
                double gate_scale = 1) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  imram::ImramModel model(small_config(c));
  model->to(imram::test::test_device());
  for (auto* layer : {&model->linear_t2i, &model->gate_t2i, &model->linear_i2t, &model->gate_i2t})
    (*layer)->weight.mul_(gate_scale);
  const std::vector<std::int64_t> lengths = {3, 1, 80, 7, 2, 15, 4};
  const auto M = std::int64_t(lengths.size());
  auto ids = torch::randint(4, 40, {M, 80}, torch::kInt64);
  const auto lengths_tensor = torch::tensor(lengths, torch::kInt64);
  ids.masked_fill_(torch::arange(80).unsqueeze(0) >= lengths_tensor.unsqueeze(1), 0);
  const auto images = model->encode_images(torch::rand({5, 9, 10}));
  const auto captions = model->encode_captions(ids, lengths_tensor);
  imram::ScoreOptions options;
  options.image_block = image_block;
  options.caption_block = caption_block;
  const auto oracle = imram::reference_score_pairs(*model, images, captions).total;
  double worst = 0;
  auto check = [&](imram::EnginePath path, bool gradients) {
    options.gradients = gradients;
    options.path = path;
    const auto scored = imram::score_pairs(*model, images, captions, options);
    EXPECT_EQ(scored.path, path);
    EXPECT_EQ(scored.total.requires_grad(), gradients && c.steps > 1);  // the items are encoded without gradients
    worst = std::max(worst, (scored.total.detach() - oracle).abs().max().cpu().item<double>());
  };
  if (images.regions.device().is_cpu()) check(imram::EnginePath::FusedCpu, false);
  check(imram::EnginePath::Tensor, false);
  check(imram::EnginePath::Tensor, true);
  // The same items with their memory halves attached, as an index with halves gives them.
  auto images_with_halves = images;
  auto captions_with_halves = captions;
  model->attach_memory_halves(images_with_halves);
  model->attach_memory_halves(captions_with_halves);
  options.gradients = false;
  for (const auto path : {imram::EnginePath::FusedCpu, imram::EnginePath::Tensor}) {
    if (path == imram::EnginePath::FusedCpu && !images.regions.device().is_cpu()) continue;
    options.path = path;
    const auto scored = imram::score_pairs(*model, images_with_halves, captions_with_halves, options);
    worst = std::max(worst, (scored.total - oracle).abs().max().cpu().item<double>());
  }
  return worst;
}

TEST(EngineOracle, AgreesWithTheAuthorsAlgorithmOnRandomModels) {
  std::uint64_t seed = 1;
  for (auto mode : {ImramMode::Text, ImramMode::Image, ImramMode::Full})
    for (int steps = 1; steps <= 4; ++steps)
      for (auto norm : {RawFeatureNorm::ClippedL2Norm, RawFeatureNorm::L2Norm, RawFeatureNorm::Clipped,
                        RawFeatureNorm::NoNorm, RawFeatureNorm::Softmax})
        for (bool imram_norm : {false, true}) {
          const Case c{mode, steps, norm, imram_norm};
          const std::int64_t image_block = 1 + std::int64_t(seed % 3), caption_block = 1 + std::int64_t(seed % 4);
          const double diff = max_diff(c, image_block, caption_block, seed++);
          EXPECT_LE(diff, 1e-5) << imram::to_string(mode) << " K=" << steps << " " << imram::to_string(norm)
                                << " imram_norm=" << imram_norm << " blocks " << image_block << "x" << caption_block;
        }
}

// The fused path projects the attended context only where that has fewer products than the
// context half: fewer query rows times memory steps than context fragments (docs/engine.md);
// the oracle test above runs both sides of this rule (short captions in blocks of one).
TEST(EngineOracle, AttendedContextIsProjectedOnlyWhereItIsCheaper) {
  EXPECT_TRUE(imram::projects_attended_context(14, 36, 3));    // one caption against images, K = 3
  EXPECT_TRUE(imram::projects_attended_context(14, 16, 2));    // the demo's model
  EXPECT_FALSE(imram::projects_attended_context(18, 36, 3));   // as many products either way
  EXPECT_FALSE(imram::projects_attended_context(36, 14, 3));   // one image against captions
  EXPECT_FALSE(imram::projects_attended_context(14, 36, 1));   // K = 1 has no memory step
  EXPECT_FALSE(imram::projects_attended_context(512, 36, 3));  // many captions at once
}

// Attached halves are what the engine reads: each one the mode uses changes the scores when it
// is changed, on both paths; K = 1 attaches none.
TEST(EngineOracle, AttachedMemoryHalvesAreWhatTheEngineUses) {
  torch::NoGradGuard no_grad;
  for (auto mode : {ImramMode::Text, ImramMode::Image, ImramMode::Full}) {
    torch::manual_seed(21);
    imram::ImramModel model(small_config({mode, 3, RawFeatureNorm::ClippedL2Norm, true}));
    auto images = model->encode_images(torch::rand({3, 5, 10}));
    auto captions = model->encode_captions(torch::randint(4, 40, {4, 6}, torch::kInt64),
                                           torch::tensor({6, 2, 4, 3}, torch::kInt64));
    model->attach_memory_halves(images);
    model->attach_memory_halves(captions);
    const bool text = mode != ImramMode::Image, image = mode != ImramMode::Text;
    EXPECT_EQ(images.text_halves.defined(), text);
    EXPECT_EQ(captions.text_halves.defined(), text);
    EXPECT_EQ(images.image_halves.defined(), image);
    EXPECT_EQ(captions.image_halves.defined(), image);
    EXPECT_EQ(model->memory_halves_width(), 24 * (int(text) + int(image)));
    for (const auto path : {imram::EnginePath::FusedCpu, imram::EnginePath::Tensor}) {
      imram::ScoreOptions options;
      options.path = path;
      const auto reference = imram::score_pairs(*model, images, captions, options).total;
      for (auto* halves : {&images.text_halves, &images.image_halves, &captions.text_halves, &captions.image_halves}) {
        if (!halves->defined()) continue;
        const auto kept = *halves;
        *halves = kept * 1.5;
        const auto changed = imram::score_pairs(*model, images, captions, options).total;
        *halves = kept;
        EXPECT_GT((changed - reference).abs().max().item<double>(), 1e-4)
            << imram::to_string(mode) << " " << imram::to_string(path);
      }
    }
    const auto joined = model->joined_memory_halves(images.text_halves, images.image_halves);
    const auto [text_back, image_back] = model->split_memory_halves(joined);
    if (text) {
      EXPECT_TRUE(text_back.equal(images.text_halves));
    }
    if (image) {
      EXPECT_TRUE(image_back.equal(images.image_halves));
    }
    EXPECT_THROW(model->split_memory_halves(joined.narrow(-1, 0, 8)), imram::Error);
  }
  imram::ImramModel single(small_config({ImramMode::Full, 1, RawFeatureNorm::ClippedL2Norm, true}));
  auto images = single->encode_images(torch::rand({2, 5, 10}));
  single->attach_memory_halves(images);
  EXPECT_FALSE(images.text_halves.defined());
  EXPECT_EQ(single->memory_halves_width(), 0);
}

TEST(EngineOracle, AutomaticChoosesThePathAndTheFusedPathRefusesGradients) {
  torch::manual_seed(9);
  imram::ImramModel model(small_config({ImramMode::Text, 2, RawFeatureNorm::ClippedL2Norm, false}));
  const auto images = model->encode_images(torch::rand({2, 4, 10}));
  const auto captions =
      model->encode_captions(torch::randint(4, 40, {3, 5}, torch::kInt64), torch::full({3}, 5, torch::kInt64));
  imram::ScoreOptions options;
  // The caller's mode (gradients on here) is not what decides: the options are.
  EXPECT_EQ(imram::score_pairs(*model, images, captions, options).path, imram::EnginePath::FusedCpu);
  options.gradients = true;
  EXPECT_EQ(imram::score_pairs(*model, images, captions, options).path, imram::EnginePath::Tensor);
  options.path = imram::EnginePath::FusedCpu;
  try {
    imram::score_pairs(*model, images, captions, options);
    ADD_FAILURE() << "the fused path ran with autograd on";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no gradients"), std::string::npos) << e.what();
  }
  EXPECT_THROW(imram::resolve_engine_path(imram::EnginePath::FusedCpu, torch::zeros({1}, torch::kFloat64)),
               imram::Error);
  EXPECT_EQ(imram::parse_engine_path(imram::to_string(imram::EnginePath::Tensor)), imram::EnginePath::Tensor);
  EXPECT_THROW(imram::parse_engine_path("fast"), imram::Error);
}

TEST(EngineOracle, SaturatedGatesAgreeWithTheOracle) {
  std::uint64_t seed = 500;
  for (auto mode : {ImramMode::Text, ImramMode::Image})
    for (bool imram_norm : {false, true}) {
      const Case c{mode, 3, RawFeatureNorm::ClippedL2Norm, imram_norm};
      EXPECT_LE(max_diff(c, 2, 3, seed++, 300.0), 1e-5) << imram::to_string(mode) << " imram_norm=" << imram_norm;
    }
}

TEST(EngineOracle, MaskedRegionsBehaveAsIfAbsent) {
  torch::manual_seed(3);
  torch::NoGradGuard no_grad;
  imram::ImramModel model(small_config({ImramMode::Full, 3, RawFeatureNorm::ClippedL2Norm, false}));
  model->to(imram::test::test_device());
  const auto features = torch::rand({3, 8, 10});
  const std::vector<std::int64_t> regions = {8, 5, 2};
  auto mask = torch::zeros({3, 8}, torch::kBool);
  for (int i = 0; i < 3; ++i) mask[i].narrow(0, 0, regions[std::size_t(i)]).fill_(true);
  const std::vector<std::int64_t> lengths = {4, 9};
  auto ids = torch::randint(4, 40, {2, 9}, torch::kInt64);
  ids[0].narrow(0, 4, 5).fill_(0);
  const auto captions = model->encode_captions(ids, torch::tensor(lengths, torch::kInt64));
  const auto masked = imram::score_pairs(*model, model->encode_images(features, mask), captions).total;
  for (int i = 0; i < 3; ++i) {
    const auto alone = model->encode_images(features[i].narrow(0, 0, regions[std::size_t(i)]).unsqueeze(0));
    const auto expected = imram::reference_score_pairs(*model, alone, captions).total;
    EXPECT_LE((masked[i] - expected[0]).abs().max().item<double>(), 1e-5) << "image " << i;
  }
}

TEST(EngineOracle, TrainingGradientsAgreeWithTheOracle) {
  torch::manual_seed(5);
  imram::ImramModel model(small_config({ImramMode::Full, 3, RawFeatureNorm::ClippedL2Norm, true}));
  model->to(imram::test::test_device());
  const std::vector<std::int64_t> lengths = {5, 2, 11};
  auto ids = torch::randint(4, 40, {3, 11}, torch::kInt64);
  const auto lengths_tensor = torch::tensor(lengths, torch::kInt64);
  ids.masked_fill_(torch::arange(11).unsqueeze(0) >= lengths_tensor.unsqueeze(1), 0);
  const auto features = torch::rand({3, 6, 10});
  auto gradients = [&](bool oracle) {
    model->zero_grad();
    const auto images = model->encode_images(features);
    const auto captions = model->encode_captions(ids, lengths_tensor);
    imram::ScoreOptions options;
    options.gradients = true;
    const auto scores = oracle ? imram::reference_score_pairs(*model, images, captions).total
                               : imram::score_pairs(*model, images, captions, options).total;
    (scores * torch::arange(9, scores.options()).view({3, 3})).sum().backward();
    std::vector<torch::Tensor> grads;
    for (const auto& p : model->parameters()) grads.push_back(p.grad().cpu());
    return grads;
  };
  const auto fast = gradients(false), oracle = gradients(true);
  for (std::size_t i = 0; i < fast.size(); ++i)
    EXPECT_LE((fast[i] - oracle[i]).abs().max().item<double>(), 1e-5 + 1e-4 * oracle[i].abs().max().item<double>());
}

}  // namespace

namespace {

// Items and their memory halves as a float16 store keeps them and hands them to the engine (the
// halves joined, rounded, split again), and the same values widened to float32.
template <typename Items>
std::pair<Items, Items> as_float16_store(const imram::ImramModel& model, Items items) {
  model->attach_memory_halves(items);
  Items stored = items, widened = items;
  const auto fragments = [](Items& i) -> torch::Tensor& {
    if constexpr (std::is_same_v<Items, imram::EncodedImages>)
      return i.regions;
    else
      return i.words;
  };
  fragments(stored) = fragments(items).to(torch::kHalf);
  fragments(widened) = fragments(stored).to(torch::kFloat32);
  if (model->memory_halves_width() == 0) return {stored, widened};  // K = 1
  const auto joined = model->joined_memory_halves(items.text_halves, items.image_halves).to(torch::kHalf);
  std::tie(stored.text_halves, stored.image_halves) = model->split_memory_halves(joined);
  std::tie(widened.text_halves, widened.image_halves) = model->split_memory_halves(joined.to(torch::kFloat32));
  return {stored, widened};
}

}  // namespace

// One query against float16 items, as search re-ranks a float16 store's shortlist: the fragment
// kernels read them as they are and give the bits of their float32 widening, within 1e-5 of the
// tensor path given the same items (their halves rounded as the store keeps them); the embedding
// (44) exercises the kernels' sixteen-lane blocks and their tails.
TEST(EngineOracle, Float16ItemsScoreAsTheirWidenedCopies) {
  torch::NoGradGuard no_grad;
  std::uint64_t seed = 700;
  for (auto mode : {ImramMode::Text, ImramMode::Image, ImramMode::Full})
    for (int steps : {1, 3}) {
      torch::manual_seed(seed++);
      auto config = small_config({mode, steps, RawFeatureNorm::ClippedL2Norm, true});
      config.embed_size = 44;
      imram::ImramModel model(config);
      const auto images = model->encode_images(torch::rand({6, 7, 10}));
      const auto captions = model->encode_captions(torch::randint(4, 40, {5, 9}, torch::kInt64),
                                                   torch::tensor({9, 3, 6, 1, 8}, torch::kInt64));
      const auto [stored_images, widened_images] = as_float16_store(model, images);
      const auto [stored_captions, widened_captions] = as_float16_store(model, captions);
      imram::ScoreOptions fused, tensor;
      fused.path = imram::EnginePath::FusedCpu;
      tensor.path = imram::EnginePath::Tensor;
      const auto check = [&](const auto& stored_scores, const auto& widened_scores, const auto& tensor_scores,
                             const std::string& what) {
        EXPECT_TRUE(stored_scores.equal(widened_scores)) << imram::to_string(mode) << " K=" << steps << " " << what;
        EXPECT_LE((stored_scores - tensor_scores).abs().max().template item<double>(), 1e-5)
            << imram::to_string(mode) << " K=" << steps << " " << what;
      };
      for (std::int64_t j = 0; j < 5; ++j) {  // each caption against the images
        const imram::EncodedCaptions one{captions.words.narrow(0, j, 1), captions.lengths.narrow(0, j, 1), {}, {}};
        check(imram::score_pairs(*model, stored_images, one, fused).total,
              imram::score_pairs(*model, widened_images, one, fused).total,
              imram::score_pairs(*model, widened_images, one, tensor).total, "caption " + std::to_string(j));
      }
      const imram::EncodedImages one_image{images.regions.narrow(0, 2, 1), {}, {}, {}};
      check(imram::score_pairs(*model, one_image, stored_captions, fused).total,
            imram::score_pairs(*model, one_image, widened_captions, fused).total,
            imram::score_pairs(*model, one_image, widened_captions, tensor).total, "image query");
      // Elsewhere the engine widens them first.
      EXPECT_TRUE(imram::score_pairs(*model, stored_images, stored_captions, tensor)
                      .total.equal(imram::score_pairs(*model, widened_images, widened_captions, tensor).total));
      EXPECT_TRUE(imram::score_pairs(*model, stored_images, stored_captions, fused)
                      .total.equal(imram::score_pairs(*model, widened_images, widened_captions, fused).total));
    }
}
