// Sharded indexes (docs/index.md#shards): S ordinary indexes of contiguous ranges of a split,
// opened and searched as one gallery.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "imram/error.h"
#include "imram/eval/index_evaluation.h"
#include "imram/model/model_dir.h"
#include "imram/search/index_dir.h"
#include "imram/search/rerank.h"
#include "imram/search/search_params.h"
#include "imram/search/shards.h"
#include "imram/util/rank_slice.h"
#include "random_model.h"
#include "test_util.h"

namespace {

struct ShardWorld {
  imram::test::TempDir dir;
  ShardWorld() {
    imram::test::write_small_world(dir.file("data"), 20, 6, 12, 6, 16);
    imram::ModelConfig config;
    config.embed_size = 8;
    config.word_dim = 4;
    config.img_dim = 16;
    config.iteration_steps = 2;
    config.global_head = 6;
    const auto model = imram::test::random_model(dir.file("data/vocab.json"), config, 5);
    imram::save_model(dir.file("model"), model);
  }
  imram::IndexOptions options() const {
    imram::IndexOptions options;
    options.show_progress = false;
    options.memory_halves = true;
    return options;
  }
  std::string whole() {
    auto writer = imram::IndexWriter::create(dir.file("whole"), dir.file("model"), options());
    writer.add_split(imram::PrecompSplit::open(dir.file("data"), "test"));
    writer.commit();
    return dir.file("whole");
  }
  std::string sharded(int shards) {
    const auto out = dir.file("sharded" + std::to_string(shards));
    imram::build_sharded_index(out, dir.file("model"), imram::PrecompSplit::open(dir.file("data"), "test"), shards,
                               options());
    return out;
  }
};

void expect_same_hits(const std::vector<imram::Hit>& expected, const std::vector<imram::Hit>& actual,
                      const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (std::size_t r = 0; r < expected.size(); ++r) {
    EXPECT_EQ(actual[r].index, expected[r].index) << what << ", rank " << r;
    // The same pair scored in another block of the engine: equal up to the products' rounding.
    EXPECT_NEAR(actual[r].score, expected[r].score, 1e-6) << what << ", rank " << r;
  }
}

}  // namespace

TEST(Shards, MergedHitsAreTheBestKByScoreThenTheLowerId) {
  imram::ShardRanges ranges;
  ranges.begins = {0, 3, 5, 9};
  EXPECT_EQ(ranges.shard_of(0), 0);
  EXPECT_EQ(ranges.shard_of(2), 0);
  EXPECT_EQ(ranges.shard_of(3), 1);
  EXPECT_EQ(ranges.shard_of(8), 2);
  // One query; shard-local ids; a tie between shard 0's 1 and shard 2's 0 (ids 1 and 5).
  const auto hit = [](std::int64_t index, double score) {
    imram::Hit made;
    made.index = index;
    made.score = score;
    return made;
  };
  const std::vector<std::vector<std::vector<imram::Hit>>> per_shard{
      {{hit(1, 0.5), hit(2, 0.1)}}, {{hit(0, 0.9), hit(1, -0.2)}}, {{hit(0, 0.5), hit(3, 0.4)}}};
  const auto merged = imram::merge_shard_hits(per_shard, ranges, 4);
  ASSERT_EQ(merged.size(), 1u);
  const std::vector<std::int64_t> ids{3, 1, 5, 8};
  ASSERT_EQ(merged[0].size(), ids.size());
  for (std::size_t r = 0; r < ids.size(); ++r) EXPECT_EQ(merged[0][r].index, ids[r]) << r;
  EXPECT_EQ(imram::merge_shard_hits(per_shard, ranges, 100)[0].size(), 6u);
}

// Five shards of a 12-image split (a pair of twins kept together across the first bound) hold what one index holds (items, texts, image infos with
// their twins, stored values) and search as it does: exhaustive search and lists that cover
// every shard give the whole index's ranking, both ways, and the evaluation its metrics.
TEST(Shards, AShardedIndexSearchesAsOneIndexOfAllItsItems) {
  ShardWorld world;
  const auto whole = imram::GalleryIndex::open(world.whole());
  const auto sharded = imram::GalleryIndex::open(world.sharded(5));
  ASSERT_EQ(sharded->shards().size(), 5u);
  ASSERT_EQ(sharded->num_images(), 12);
  ASSERT_EQ(sharded->num_captions(), 60);
  EXPECT_EQ(sharded->caption_texts(), whole->caption_texts());
  EXPECT_EQ(sharded->captions_per_image(), whole->captions_per_image());
  ASSERT_TRUE(sharded->described());
  for (std::int64_t image = 0; image < 12; ++image) {
    EXPECT_EQ(imram::image_info_json(sharded->image_info(image)), imram::image_info_json(whole->image_info(image)))
        << image;
  }
  // Even shares would be 3, 3, 2, 2, 2 images; images 2 and 3 are twins, so the first bound moves.
  ASSERT_EQ(whole->image_info(3).twin, 2);
  EXPECT_EQ(sharded->shards()[0]->num_images(), 4);
  std::int64_t shard_images = 0;
  for (const auto& shard : sharded->shards()) {
    EXPECT_GT(shard->num_images(), 0);
    shard_images += shard->num_images();
  }
  EXPECT_EQ(shard_images, 12);

  const std::vector<std::int64_t> images{11, 0, 5, 4}, captions{59, 0, 31, 30, 7};
  const auto a = whole->store()->images(images, true), b = sharded->store()->images(images, true);
  EXPECT_TRUE(torch::allclose(a.regions, b.regions, 0, 1e-6));
  EXPECT_TRUE(torch::allclose(a.text_halves, b.text_halves, 0, 1e-6));
  const auto c = whole->store()->captions(captions, true), d = sharded->store()->captions(captions, true);
  EXPECT_TRUE(torch::equal(c.lengths, d.lengths));
  ASSERT_EQ(c.words.sizes(), d.words.sizes());
  EXPECT_TRUE(torch::allclose(c.words, d.words, 0, 1e-6));
  EXPECT_TRUE(torch::allclose(c.text_halves, d.text_halves, 0, 1e-6));

  for (const std::int64_t shortlist : {std::int64_t(0), std::int64_t(1000)}) {
    const auto name = "shortlist " + std::to_string(shortlist);
    for (const std::string text : {"a red circle left of a blue square", "small green star"})
      expect_same_hits(whole->searcher(imram::GallerySide::Images, shortlist)->search(whole->text_query(text), 12),
                       sharded->searcher(imram::GallerySide::Images, shortlist)->search(sharded->text_query(text), 12),
                       name + ", " + text);
    for (const std::int64_t image : {0, 6, 11})
      expect_same_hits(
          whole->searcher(imram::GallerySide::Captions, shortlist)->search(whole->image_query(image), 60),
          sharded->searcher(imram::GallerySide::Captions, shortlist)->search(sharded->image_query(image), 60),
          name + ", image " + std::to_string(image));
  }
  // FAISS's own scores merge the same way.
  expect_same_hits(whole->stage1(imram::GallerySide::Images)->search(whole->text_query("small green star"), 12),
                   sharded->stage1(imram::GallerySide::Images)->search(sharded->text_query("small green star"), 12),
                   "stage 1");

  imram::TwoStageEvalOptions options;
  options.show_progress = false;
  options.shortlist = 1000;
  const auto expected = imram::evaluate_index(*whole, options), actual = imram::evaluate_index(*sharded, options);
  ASSERT_TRUE(expected.exhaustive && actual.exhaustive && expected.two_stage && actual.two_stage);
  EXPECT_EQ(actual.exhaustive->metrics.rsum, expected.exhaustive->metrics.rsum);
  EXPECT_EQ(actual.two_stage->metrics.rsum, expected.two_stage->metrics.rsum);
  EXPECT_EQ(actual.exhaustive->twin_accuracy, expected.exhaustive->twin_accuracy);
  sharded->verify();
}

// A shard searches its part of the lists meant for the whole gallery: its share of the list's
// items plus four standard deviations of that count, so that S shards searched at once do about
// 1/S of the work each (docs/index.md#shards).
TEST(Shards, AShardSearchesItsPartOfTheWholeGallerysLists) {
  EXPECT_EQ(imram::shard_list(20000, 50000, 100000), 10283);   // 10,000 + 4 x 70.7
  EXPECT_EQ(imram::shard_list(333, 50000, 100000), 203);       // 166.5 + 4 x 9.1
  EXPECT_EQ(imram::shard_list(20000, 100000, 100000), 20000);  // not a shard
  EXPECT_EQ(imram::shard_list(0, 50000, 100000), 0);           // no list (exhaustive, no cascade) stays none
  // Whatever the split, no shard's part exceeds the list and the parts cover it.
  for (const int shards : {2, 3, 5, 8})
    for (const std::int64_t list : {1, 7, 100, 333, 20000}) {
      std::int64_t parts = 0;
      for (int s = 0; s < shards; ++s) {
        const auto part = imram::shard_list(list, imram::rank_slice(100003, s, shards).count, 100003);
        EXPECT_LE(part, list);
        parts += part;
      }
      EXPECT_GE(parts, list) << shards << " shards, list " << list;
    }
  // A shard's searcher resolves the lists for the gallery it is part of, then keeps its part.
  ShardWorld world;
  const auto sharded = imram::GalleryIndex::open(world.sharded(3));
  const auto shard = sharded->shards().front();
  const auto searcher = shard->searcher(imram::GallerySide::Images, 333, 20000, imram::kAutoStep1, 100000);
  const auto& rerank = dynamic_cast<const imram::RerankSearcher&>(*searcher);
  EXPECT_EQ(rerank.candidates(), imram::shard_list(333, shard->num_images(), 100000));
  EXPECT_EQ(rerank.prefilter(), imram::shard_list(20000, shard->num_images(), 100000));
  EXPECT_LT(rerank.prefilter(), 20000);
  const auto automatic = shard->searcher(imram::GallerySide::Images, imram::kAutoShortlist, imram::kAutoPrefilter,
                                         imram::kAutoStep1, 100000);
  EXPECT_EQ(dynamic_cast<const imram::RerankSearcher&>(*automatic).prefilter(),
            imram::shard_list(imram::auto_prefilter(
                                  100000, imram::stored_values_per_item(*shard->store(), imram::GallerySide::Images)),
                              shard->num_images(), 100000));
}

TEST(Shards, AShardedIndexSaysWhatIsWrongWithIt) {
  ShardWorld world;
  const auto dir = world.sharded(2);
  const auto split = imram::PrecompSplit::open(world.dir.file("data"), "test");
  try {
    imram::IndexWriter::append(dir, false).add_split(split);
    FAIL() << "an addition to a sharded index was taken";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find("a sharded index takes no additions"), std::string::npos) << e.what();
  }
  try {
    imram::build_sharded_index(world.dir.file("many"), world.dir.file("model"), split, 13, world.options());
    FAIL() << "13 shards of 12 images were built";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find("12 images cannot make 13 shards"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(world.dir.file("many")));
  // A caption the last shard cannot take is named by its line in the split's file, not in the shard.
  auto lines = imram::test::read_text(world.dir.file("data/test_caps.txt"));
  std::string long_caption;
  for (int token = 0; token < 600; ++token) long_caption += "a ";
  std::size_t at = 0;
  for (int line = 1; line < 43; ++line) at = lines.find('\n', at) + 1;
  lines.replace(at, lines.find('\n', at) - at, long_caption);
  std::ofstream(world.dir.file("data/test_caps.txt"), std::ios::trunc) << lines;
  try {
    imram::build_sharded_index(world.dir.file("long"), world.dir.file("model"),
                               imram::PrecompSplit::open(world.dir.file("data"), "test"), 3, world.options());
    FAIL() << "a caption of 600 tokens was indexed";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find("test_caps.txt:43: caption has 600 tokens"), std::string::npos) << e.what();
  }
  // A listing that disagrees with its shards is refused, naming the listing.
  auto listing = nlohmann::json::parse(imram::test::read_text(dir + "/shards.json"));
  listing["shards"][1]["images"] = 5;
  std::ofstream(dir + "/shards.json") << listing.dump();
  try {
    imram::GalleryIndex::open(dir);
    FAIL() << "a listing with the wrong count was opened";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/shards.json: shard-001 holds 6 images"), std::string::npos)
        << e.what();
  }
  listing["shards"][1]["images"] = 6;
  listing["shards"][1]["dir"] = "../whole";
  std::ofstream(dir + "/shards.json") << listing.dump();
  EXPECT_THROW(imram::GalleryIndex::open(dir), imram::Error);
}
