#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "imram/engine/encoding.h"
#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "imram/search/gallery.h"
#include "random_model.h"
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
    model = imram::test::random_model(dir.file("data/vocab.json"), config, 1);
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
  const auto hits = first.index().searcher(imram::GallerySide::Images, 0)->search(first.index().text_query(query), 6);
  ASSERT_EQ(hits.size(), 6u);

  // The same ranking from the plain scoring path.
  torch::NoGradGuard no_grad;
  const auto images = imram::encode_image_file(*model.net, split.features());
  const auto captions =
      imram::encode_caption_ids(*model.net, imram::encode_caption_texts(*model.vocabulary, {query}, "query"));
  const auto scores = imram::score_pairs(*model.net, images, captions).total.select(1, 0);
  for (std::size_t r = 0; r < hits.size(); ++r) EXPECT_NEAR(hits[r].score, scores[hits[r].index].item<double>(), 1e-6);
  for (std::size_t r = 1; r < hits.size(); ++r) EXPECT_GE(hits[r - 1].score, hits[r].score);

  const imram::Gallery second(model, split, world.dir.file("model"), world.dir.file("cache"));
  EXPECT_TRUE(second.loaded_from_cache());
  const auto again =
      second.index().searcher(imram::GallerySide::Images, 0)->search(second.index().text_query(query), 6);
  for (std::size_t r = 0; r < hits.size(); ++r) {
    EXPECT_EQ(again[r].index, hits[r].index);
    EXPECT_FLOAT_EQ(float(again[r].score), float(hits[r].score));
  }
  const auto captions_for_image =
      second.index().searcher(imram::GallerySide::Captions, 0)->search(second.index().image_query(2), 3);
  EXPECT_EQ(captions_for_image.size(), 3u);
  EXPECT_THROW(second.index().image_query(6), imram::Error);
}

}  // namespace

namespace {

namespace fs = std::filesystem;

std::uint64_t bytes_below(const std::string& dir) {
  std::uint64_t bytes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) bytes += entry.file_size();
  return bytes;
}

TEST(GalleryCache, PrunesTheLeastRecentlyUsedEntriesAndNothingElse) {
  SmallWorld world;
  auto model = imram::load_model(world.dir.file("model"));
  const auto cache = world.dir.file("cache");
  const auto test = imram::PrecompSplit::open(world.dir.file("data"), "test");
  const auto dev = imram::PrecompSplit::open(world.dir.file("data"), "dev");
  const auto train = imram::PrecompSplit::open(world.dir.file("data"), "train");
  const auto entry = [&](const imram::PrecompSplit& split) {
    return cache + "/" + imram::gallery_fingerprint(world.dir.file("model"), split);
  };
  const auto unlimited = std::uint64_t(1) << 40;
  imram::Gallery(model, test, world.dir.file("model"), cache, false, unlimited);
  imram::Gallery(model, dev, world.dir.file("model"), cache, false, unlimited);
  imram::Gallery(model, train, world.dir.file("model"), cache, false, unlimited);
  // A user's file, a directory that is not an entry, and the temporary of a killed build.
  fs::create_directories(cache + "/notes");
  { std::ofstream(cache + "/notes/readme.txt") << "mine"; }
  { std::ofstream(cache + "/list.txt") << "mine"; }
  const auto abandoned = cache + "/test-5eed.tmp.999999999";  // no such process
  fs::create_directories(abandoned);
  { std::ofstream(abandoned + "/regions.bin") << std::string(4096, 'x'); }
  const auto test_bytes = bytes_below(entry(test)), dev_bytes = bytes_below(entry(dev)),
             train_bytes = bytes_below(entry(train));
  ASSERT_GT(dev_bytes, 0u);
  // Used last: `train` an hour ago, `dev` two, `test` three, and then `test` again now (reuse
  // refreshes its time), so that `dev` is the least recently used. Room for two entries.
  fs::last_write_time(entry(train), fs::file_time_type::clock::now() - std::chrono::hours(1));
  fs::last_write_time(entry(dev), fs::file_time_type::clock::now() - std::chrono::hours(2));
  fs::last_write_time(entry(test), fs::file_time_type::clock::now() - std::chrono::hours(3));
  const auto two_entries = test_bytes + train_bytes + dev_bytes / 2;
  EXPECT_TRUE(imram::Gallery(model, test, world.dir.file("model"), cache, false, two_entries).loaded_from_cache());
  EXPECT_TRUE(fs::exists(entry(train) + "/manifest.json"));
  EXPECT_TRUE(fs::exists(entry(test) + "/manifest.json"));
  EXPECT_FALSE(fs::exists(entry(dev)));
  EXPECT_FALSE(fs::exists(abandoned));
  EXPECT_TRUE(fs::exists(cache + "/notes/readme.txt"));
  EXPECT_TRUE(fs::exists(cache + "/list.txt"));

  // A limit below one entry keeps only the entry in use, and it still answers.
  const imram::Gallery alone(model, dev, world.dir.file("model"), cache, false, 1);
  EXPECT_EQ(alone.index()
                .searcher(imram::GallerySide::Images, 0)
                ->search(alone.index().text_query(dev.captions()[0]), 2)
                .size(),
            2u);
  EXPECT_TRUE(fs::exists(entry(dev) + "/manifest.json"));
  EXPECT_FALSE(fs::exists(entry(test)));
  EXPECT_FALSE(fs::exists(entry(train)));
  EXPECT_TRUE(fs::exists(cache + "/list.txt"));
}

}  // namespace
