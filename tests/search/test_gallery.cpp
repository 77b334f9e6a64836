#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "imram/engine/encoding.h"
#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "imram/search/gallery.h"
#include "test_util.h"

namespace {

struct SmallWorld {
  imram::test::TempDir dir;
  imram::Model model;
  SmallWorld() {
    imram::test::write_small_world(dir.file("data"), 10, 4, 6, 6, 16);
    imram::ModelConfig config;
    config.embed_size = 8;
    config.word_dim = 4;
    config.img_dim = 16;
    config.iteration_steps = 2;
    model.vocabulary = imram::Vocabulary::from_file(dir.file("data/vocab.json"));
    config.vocab_size = model.vocabulary->size();
    torch::manual_seed(1);
    model.net = imram::ImramModel(config);
    imram::save_model(dir.file("model"), model);
  }
};

TEST(Gallery, RanksLikeExhaustiveScoringAndReusesItsCache) {
  SmallWorld world;
  auto model = imram::load_model(world.dir.file("model"));
  const auto split = imram::PrecompSplit::open(world.dir.file("data"), "test");
  const imram::Gallery first(model, split, world.dir.file("model"), world.dir.file("cache"));
  EXPECT_FALSE(first.loaded_from_cache());
  const auto query = split.captions()[7];
  const auto hits = first.search_images(query, 6);
  ASSERT_EQ(hits.size(), 6u);

  // The same ranking from the plain scoring path.
  torch::NoGradGuard no_grad;
  const auto images = imram::encode_image_file(*model.net, split.features());
  const auto captions = imram::encode_caption_ids(
      *model.net, imram::encode_caption_texts(*model.vocabulary, {query}, "query"));
  const auto scores = imram::score_pairs(*model.net, images, captions).total.select(1, 0);
  for (std::size_t r = 0; r < hits.size(); ++r)
    EXPECT_NEAR(hits[r].score, scores[hits[r].index].item<double>(), 1e-6);
  for (std::size_t r = 1; r < hits.size(); ++r) EXPECT_GE(hits[r - 1].score, hits[r].score);

  const imram::Gallery second(model, split, world.dir.file("model"), world.dir.file("cache"));
  EXPECT_TRUE(second.loaded_from_cache());
  const auto again = second.search_images(query, 6);
  for (std::size_t r = 0; r < hits.size(); ++r) {
    EXPECT_EQ(again[r].index, hits[r].index);
    EXPECT_FLOAT_EQ(float(again[r].score), float(hits[r].score));
  }
  const auto captions_for_image = second.search_captions(2, 3);
  EXPECT_EQ(captions_for_image.size(), 3u);
  EXPECT_THROW(second.search_captions(6, 3), imram::Error);
}

}  // namespace
