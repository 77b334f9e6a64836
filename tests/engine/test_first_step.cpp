// IMRAM's first step from the pairs' raw scores and the context items' Gram matrices
// (first_step_from_products, engine/matching.h): what an index's codes feed. Both of its paths are
// held to the engine's own first step (score_pairs with steps = 1), for every normalisation of
// the raw scores, in each mode, with padded captions on both sides of the match.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "imram/engine/matching.h"
#include "imram/engine/scorer.h"
#include "imram/model/imram.h"

namespace {

using imram::EnginePath;
using imram::RawFeatureNorm;

torch::Tensor first_step(const imram::ModelConfig& config, const torch::Tensor& regions, const torch::Tensor& words,
                         const torch::Tensor& lengths, EnginePath path) {
  const auto N = regions.size(0), R = regions.size(1), M = words.size(0), L = words.size(1);
  const auto word_mask = (torch::arange(L).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kFloat32);  // (M, L)
  const auto region_mask = torch::ones({N, R});
  auto total = torch::zeros({N, M});
  if (config.uses_text_direction()) {
    // The words of each caption (query, A = M) attend over each image's regions (context, B = N).
    const auto raw = torch::einsum("ald,brd->balr", {words, regions}).contiguous();
    const auto gram = torch::bmm(regions, regions.transpose(1, 2));
    total += imram::first_step_from_products(raw, gram, word_mask, words.pow(2).sum(-1), {}, config, path);
  }
  if (config.uses_image_direction()) {
    // The regions of each image (query, A = N) attend over each caption's real words (B = M).
    const auto raw = torch::einsum("ard,bld->barl", {regions, words}).contiguous();
    const auto gram = torch::bmm(words, words.transpose(1, 2));
    total +=
        imram::first_step_from_products(raw, gram, region_mask, regions.pow(2).sum(-1), word_mask == 0, config, path)
            .t();
  }
  return total;
}

TEST(FirstStepFromProducts, IsTheEnginesFirstStepOnBothPathsForEveryNormalisation) {
  torch::NoGradGuard no_grad;
  for (const auto norm : {RawFeatureNorm::ClippedL2Norm, RawFeatureNorm::L2Norm, RawFeatureNorm::Clipped,
                          RawFeatureNorm::NoNorm, RawFeatureNorm::Softmax}) {
    for (const auto mode : {imram::ImramMode::Text, imram::ImramMode::Image, imram::ImramMode::Full}) {
      imram::ModelConfig config;
      config.mode = mode;
      config.embed_size = 24;  // past one sixteen-lane chunk, with a tail
      config.word_dim = 8;
      config.img_dim = 16;
      config.vocab_size = 20;
      config.iteration_steps = 3;
      config.raw_feature_norm = norm;
      torch::manual_seed(5);
      imram::ImramModel model(config);
      model->eval();
      // 19 regions: more than one chunk of sixteen; unnormalised, so that norms matter.
      const auto regions = torch::randn({4, 19, config.embed_size});
      const auto lengths = torch::tensor({7, 3, 5}, torch::kInt64);
      auto words = torch::randn({3, 7, config.embed_size});
      words *= (torch::arange(7).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2).to(torch::kFloat32);
      imram::ScoreOptions options;
      options.steps = 1;
      imram::EncodedImages images;
      images.regions = regions;
      imram::EncodedCaptions captions;
      captions.words = words;
      captions.lengths = lengths;
      const auto expected = imram::score_pairs(*model, images, captions, options).total;
      for (const auto path : {EnginePath::FusedCpu, EnginePath::Tensor}) {
        const auto got = first_step(config, regions, words, lengths, path);
        EXPECT_LE((got - expected).abs().max().item<double>(), 1e-5)
            << imram::to_string(mode) << ", " << imram::to_string(norm) << ", " << imram::to_string(path);
      }
      // A float16 Gram matrix (as a float16 store keeps it) reads as its float32 values.
      const auto raw = torch::einsum("ald,brd->balr", {words, regions}).contiguous();
      const auto gram = torch::bmm(regions, regions.transpose(1, 2)).to(torch::kHalf);
      const auto mask = (torch::arange(7).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kFloat32);
      const auto squared = words.pow(2).sum(-1);
      const auto fused = imram::first_step_from_products(raw, gram, mask, squared, {}, config, EnginePath::FusedCpu);
      const auto widened =
          imram::first_step_from_products(raw, gram.to(torch::kFloat32), mask, squared, {}, config, EnginePath::Tensor);
      EXPECT_LE((fused - widened).abs().max().item<double>(), 1e-5) << imram::to_string(norm) << ", float16 Gram";
    }
  }
}

// Raw scores looked up in a table by codes (what an index's codes give) are the raw scores
// themselves: both paths, codes on either side of the match.
TEST(FirstStepFromProducts, LookedUpRawScoresAreTheRawScores) {
  torch::NoGradGuard no_grad;
  imram::ModelConfig config;
  config.embed_size = 20;
  torch::manual_seed(9);
  const auto centroids = torch::randn({11, 20}), query = torch::randn({5, 20});
  const auto table = torch::mm(centroids, query.t()).contiguous();  // (K, 5)
  const auto codes = torch::randint(11, {7, 19}, torch::kInt64);    // 7 items of 19 fragments
  const auto items = centroids.index_select(0, codes.reshape({-1})).view({7, 19, 20});
  const auto item_grams = torch::bmm(items, items.transpose(1, 2));
  const auto query_gram = torch::mm(query, query.t()).unsqueeze(0);
  const auto query_mask = torch::ones({1, 5}), item_mask = torch::ones({7, 19});
  const auto query_squared = query.pow(2).sum(1).unsqueeze(0), item_squared = items.pow(2).sum(-1);
  // The items as context (B = 7, A = 1) and as queries (B = 1, A = 7).
  const auto as_context = torch::einsum("qd,bcd->bqc", {query, items}).unsqueeze(1).contiguous();
  const auto as_queries = torch::einsum("ajd,cd->ajc", {items, query}).unsqueeze(0).contiguous();
  for (const auto path : {EnginePath::FusedCpu, EnginePath::Tensor}) {
    const auto context_expected = imram::first_step_from_products(as_context, item_grams, query_mask, query_squared, {},
                                                                  config, EnginePath::Tensor);
    const auto context_got = imram::first_step_from_products(imram::FirstStepRaw{{}, table, codes, true}, item_grams,
                                                             query_mask, query_squared, {}, config, path);
    EXPECT_LE((context_got - context_expected).abs().max().item<double>(), 1e-5) << imram::to_string(path);
    const auto queries_expected = imram::first_step_from_products(as_queries, query_gram, item_mask, item_squared, {},
                                                                  config, EnginePath::Tensor);
    const auto queries_got = imram::first_step_from_products(imram::FirstStepRaw{{}, table, codes, false}, query_gram,
                                                             item_mask, item_squared, {}, config, path);
    EXPECT_LE((queries_got - queries_expected).abs().max().item<double>(), 1e-5) << imram::to_string(path);
    EXPECT_EQ(context_got.sizes(), (std::vector<std::int64_t>{7, 1}));
    EXPECT_EQ(queries_got.sizes(), (std::vector<std::int64_t>{1, 7}));
  }
}

}  // namespace
