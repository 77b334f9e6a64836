// Two-stage search: the index directory, the searchers that compose, and the global head.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/cli_runner.h"
#include "imram/engine/encoding.h"
#include "imram/error.h"
#include "imram/eval/evaluator.h"
#include "imram/eval/index_evaluation.h"
#include "imram/model/tensor_io.h"
#include "imram/search/faiss_shortlist.h"
#include "imram/search/fragment_codes.h"
#include "imram/search/gallery.h"
#include "imram/search/index_dir.h"
#include "imram/search/rerank.h"
#include "imram/search/residual_codes.h"
#include "imram/train/global_fit.h"
#include "imram/train/train_step.h"
#include "random_model.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

imram::Model small_model(const std::string& vocab_path, std::int64_t global_head, std::uint64_t seed = 1,
                         imram::ImramMode mode = imram::ImramMode::Text) {
  imram::ModelConfig config;
  config.mode = mode;
  config.embed_size = 8;
  config.word_dim = 4;
  config.img_dim = 16;
  config.iteration_steps = 2;
  config.global_head = global_head;
  auto model = imram::test::random_model(vocab_path, config, std::int64_t(seed));
  model.net->eval();
  return model;
}

struct World {
  imram::test::TempDir dir;
  World() {
    imram::test::write_small_world(dir.file("data"), 20, 6, 12, 6, 16);
    imram::save_model(dir.file("model"), small_model(dir.file("data/vocab.json"), 6));
  }
  std::string build(const std::string& name, const std::string& store = "float32", const std::string& split = "test",
                    const std::string& faiss = "", bool memory_halves = false) {
    imram::IndexOptions options;
    options.store = imram::parse_store_dtype(store);
    options.memory_halves = memory_halves;
    options.faiss_factory = faiss;
    options.show_progress = false;
    auto writer = imram::IndexWriter::create(dir.file(name), dir.file("model"), options);
    writer.add_split(imram::PrecompSplit::open(dir.file("data"), split));
    writer.commit();
    return dir.file(name);
  }
};

// IMRAM's scores of every pair of the split, the plain way: encode, score_pairs.
torch::Tensor exhaustive_scores(imram::Model model, const imram::PrecompSplit& split) {
  torch::NoGradGuard no_grad;
  const auto images = imram::encode_image_file(*model.net, split.features());
  const auto captions = imram::encode_caption_ids(
      *model.net, imram::encode_caption_texts(*model.vocabulary, split.captions(), split.captions_path()));
  return imram::score_pairs(*model.net, images, captions).total.to(torch::kFloat64);
}

// Also for a float16 store with memory halves, whose items the engine reads as stored.
TEST(Index, ShortlistCoveringTheGalleryEqualsExhaustiveSearch) {
  World world;
  for (const bool float16 : {false, true}) {
    const auto index =
        imram::GalleryIndex::open(float16 ? world.build("index16", "float16", "test", "", true) : world.build("index"));
    ASSERT_TRUE(index->has_shortlist());
    EXPECT_EQ(index->faiss_factory(), "Flat");
    const auto exhaustive = index->searcher(imram::GallerySide::Images, 0);
    const auto two_stage = index->searcher(imram::GallerySide::Images, 1000);  // more than the 12 images
    for (const std::string text : {"a red circle left of a blue square", "small green star"}) {
      const auto query = index->text_query(text);
      const auto a = exhaustive->search(query, 12, nullptr), b = two_stage->search(query, 12, nullptr);
      ASSERT_EQ(a.size(), 12u);
      ASSERT_EQ(b.size(), 12u);
      for (std::size_t r = 0; r < a.size(); ++r) {
        EXPECT_EQ(a[r].index, b[r].index);
        EXPECT_DOUBLE_EQ(a[r].score, b[r].score);
        EXPECT_TRUE(b[r].stage1.has_value());
      }
    }
    const auto by_image =
        index->searcher(imram::GallerySide::Captions, 1000)->search(index->image_query(3), 60, nullptr);
    const auto by_image_all =
        index->searcher(imram::GallerySide::Captions, 0)->search(index->image_query(3), 60, nullptr);
    ASSERT_EQ(by_image.size(), 60u);
    for (std::size_t r = 0; r < by_image.size(); ++r) EXPECT_EQ(by_image[r].index, by_image_all[r].index);
  }
}

// An item's refined score depends on the set of candidates, not on the order a shortlist
// listed them in: the refine stage scores them in the store's order.
TEST(Index, RefinedScoresDoNotDependOnTheCandidatesOrder) {
  World world;
  const auto index = imram::GalleryIndex::open(world.build("index"));
  const imram::ImramRefiner refiner(index->model().net, index->store(), imram::GallerySide::Images);
  const auto query = index->text_query("a red circle left of a blue square");
  const std::vector<std::int64_t> ids = {7, 2, 11, 0, 5}, reversed = {5, 0, 11, 2, 7, 2};
  const auto a = refiner.refine({query}, ids, 5, nullptr).front(),
             b = refiner.refine({query}, reversed, 5, nullptr).front();
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), 5u);  // the repeated candidate is scored once
  for (std::size_t r = 0; r < a.size(); ++r) {
    EXPECT_EQ(a[r].index, b[r].index);
    EXPECT_EQ(a[r].score, b[r].score);
    EXPECT_NE(std::find(ids.begin(), ids.end(), a[r].index), ids.end());
  }
  imram::SearchStats stats;
  refiner.refine({query, index->text_query("small green star")}, ids, 2, &stats);
  EXPECT_EQ(stats.scored, 10);
  EXPECT_EQ(stats.engine_path, "fused_cpu");  // several queries together: the many-by-many path
  imram::SearchStats alone;
  refiner.refine({query}, ids, 2, &alone);
  EXPECT_EQ(alone.engine_path, "fused_cpu");  // one query: its rows of every pair in one product
}

// The cascade: FAISS gives N1, IMRAM's first step keeps N2, the full K steps order them.
TEST(Index, CascadeKeepsExactScoresAndEqualsExhaustiveWhenItKeepsEverything) {
  World world;
  const auto model = imram::load_model(world.dir.file("model"));
  const auto split = imram::PrecompSplit::open(world.dir.file("data"), "test");
  const auto expected = exhaustive_scores(model, split);
  const auto index = imram::GalleryIndex::open(world.build("index"));
  const auto exhaustive = index->searcher(imram::GallerySide::Images, 0);
  const auto everything = index->searcher(imram::GallerySide::Images, 12, 12);
  const auto cascade = index->searcher(imram::GallerySide::Images, 3, 8);
  const auto stage1 = index->stage1(imram::GallerySide::Images);
  for (std::int64_t j = 0; j < split.num_captions(); j += 5) {
    const auto query = index->text_query(split.captions()[std::size_t(j)]);
    const auto all = exhaustive->search(query, 12, nullptr), kept_all = everything->search(query, 12, nullptr);
    ASSERT_EQ(kept_all.size(), 12u);
    for (std::size_t r = 0; r < all.size(); ++r) {
      EXPECT_EQ(all[r].index, kept_all[r].index);
      EXPECT_EQ(all[r].score, kept_all[r].score);
    }
    const auto hits = cascade->search(query, 3, nullptr);
    ASSERT_EQ(hits.size(), 3u);
    std::vector<std::int64_t> proposed;
    for (const auto& hit : stage1->search(query, 8, nullptr)) proposed.push_back(hit.index);
    for (const auto& hit : hits) {
      EXPECT_LE(std::abs(hit.score - expected[hit.index][j].item<double>()), 1e-5) << "image " << hit.index;
      EXPECT_NE(std::find(proposed.begin(), proposed.end(), hit.index), proposed.end()) << "not from stage 1";
    }
    // The middle stage kept the 3 of the 8 that step 1 alone ranks best.
    const imram::ImramRefiner first_step(index->model().net, index->store(), imram::GallerySide::Images, 1);
    std::vector<std::int64_t> best_by_step1;
    const auto by_step1 = first_step.refine({query}, proposed, 3, nullptr);
    for (const auto& hit : by_step1.front()) best_by_step1.push_back(hit.index);
    std::vector<std::int64_t> kept;
    for (const auto& hit : hits) kept.push_back(hit.index);
    std::sort(kept.begin(), kept.end());
    std::sort(best_by_step1.begin(), best_by_step1.end());
    EXPECT_EQ(kept, best_by_step1);
  }
}

// The default cascade's lists grow with the gallery: the first is half of it, at least 1,000, at
// most 20,000 (on a gallery smaller than that, step 1 scores every item); the one all K steps
// score is one item in 300, at least 100, at most 1,000. They shrink as the items grow: a model
// trained on real data (36 x 1,024 values per image) gets 8,000 -> codes 400 -> 80 at most.
TEST(Index, AutomaticListsGrowWithTheGalleryAndShrinkWithTheItems) {
  constexpr double demo = 16 * 128, large = 36 * 1024, half = 36 * 512, huge = 100 * 2048;
  // Codebooks: about 8 centroids per square root of the fragments, a power of two, 16 to 8,192.
  EXPECT_EQ(imram::auto_codebook_size(8000), 512);
  EXPECT_EQ(imram::auto_codebook_size(1600000), 8192);
  EXPECT_EQ(imram::auto_codebook_size(100000000), 8192);
  EXPECT_EQ(imram::auto_codebook_size(5), 5);
  EXPECT_EQ(imram::auto_prefilter(500, demo), 1000);
  EXPECT_EQ(imram::auto_prefilter(8000, demo), 4000);
  EXPECT_EQ(imram::auto_prefilter(10000000, demo), 20000);
  EXPECT_EQ(imram::auto_prefilter(100000, large), 8000);
  EXPECT_EQ(imram::auto_prefilter(100000, half), 16000);
  EXPECT_EQ(imram::auto_prefilter(100000, huge), 1440);
  EXPECT_EQ(imram::auto_prefilter(100000, 1e9), 1000);
  EXPECT_EQ(imram::auto_shortlist(500, demo), 100);
  EXPECT_EQ(imram::auto_shortlist(100000, demo), 333);
  EXPECT_EQ(imram::auto_shortlist(10000000, demo), 1000);
  EXPECT_EQ(imram::auto_shortlist(100000, large), 80);
  EXPECT_EQ(imram::auto_shortlist(100000, half), 160);
  EXPECT_EQ(imram::auto_shortlist(100000, huge), imram::kMinShortlist);
  // The coded step keeps what exact step 1 reads in 400 items of 36 x 1,024 values, at least four
  // times the shortlist: at the demo model's size 7,200, more than a small gallery's first list.
  EXPECT_EQ(imram::auto_step1(8000, 80, large), 400);
  EXPECT_EQ(imram::auto_step1(20000, 333, large), 1332);
  EXPECT_EQ(imram::auto_step1(16000, 160, half), 800);
  EXPECT_EQ(imram::auto_step1(8000, 160, large), 640);
  EXPECT_EQ(imram::auto_step1(20000, 333, demo), 7200);
  EXPECT_EQ(imram::auto_step1(4000, 100, demo), 4000);
  // As one search runs them: the shortlist at most the gallery, a first list only when longer than
  // the shortlist, a coded step only where the side keeps codes and it keeps less than the first list.
  const auto lists = [](std::int64_t gallery, double values, bool coded, imram::SearchLists asked = {}) {
    const auto r = imram::resolve_lists(asked, gallery, values, coded);
    return std::vector<std::int64_t>{r.shortlist, r.prefilter, r.step1};
  };
  EXPECT_EQ(lists(100000, large, true), (std::vector<std::int64_t>{80, 8000, 400}));
  EXPECT_EQ(lists(100000, large, false), (std::vector<std::int64_t>{80, 8000, 0}));
  EXPECT_EQ(lists(100000, demo, true), (std::vector<std::int64_t>{333, 20000, 7200}));
  EXPECT_EQ(lists(8000, demo, true), (std::vector<std::int64_t>{100, 4000, 0}));
  EXPECT_EQ(lists(60, demo, true), (std::vector<std::int64_t>{60, 0, 0}));
  EXPECT_EQ(lists(100000, large, true, {0, 5000, 300}), (std::vector<std::int64_t>{0, 0, 0}));
  EXPECT_EQ(lists(100000, large, true, {50, 50, 30}), (std::vector<std::int64_t>{50, 0, 0}));
  EXPECT_EQ(lists(100000, large, true, {50, 5000, 5000}), (std::vector<std::int64_t>{50, 5000, 0}));
  EXPECT_EQ(lists(100000, large, true, {50, 500000, 300}), (std::vector<std::int64_t>{50, 100000, 300}));
  World world;
  const auto index = imram::GalleryIndex::open(world.build("index"));
  const auto automatic = std::dynamic_pointer_cast<const imram::RerankSearcher>(
      index->searcher(imram::GallerySide::Images, imram::kAutoShortlist, imram::kAutoPrefilter));
  ASSERT_TRUE(automatic);
  EXPECT_EQ(automatic->prefilter(), 1000);
  EXPECT_EQ(automatic->candidates(), 100);  // clamped to the gallery when it searches
  EXPECT_EQ(automatic->search(index->text_query(index->caption_texts().front()), 5, nullptr).size(), 5u);
  EXPECT_THROW(index->searcher(imram::GallerySide::Images, 3, -2), imram::Error);
  EXPECT_THROW(index->searcher(imram::GallerySide::Images, -2, 0), imram::Error);
}

// An index that keeps the memory halves searches as one that computes them, in both directions,
// two-stage and exhaustive; the halves are in the manifest, checked, and covered by verify.
TEST(Index, StoredMemoryHalvesSearchAsComputedOnes) {
  World world;
  const auto plain = imram::GalleryIndex::open(world.build("plain"));
  const auto kept_dir = world.build("kept", "float32", "test", "", /*memory_halves=*/true);
  const auto kept = imram::GalleryIndex::open(kept_dir);
  EXPECT_FALSE(plain->store()->keeps_memory_halves());
  ASSERT_TRUE(kept->store()->keeps_memory_halves());
  const auto manifest = nlohmann::json::parse(std::ifstream(kept_dir + "/manifest.json"));
  EXPECT_EQ(manifest.at("memory_halves"), 16);  // text-IMRAM, d = 8: 2d per region and word
  EXPECT_FALSE(nlohmann::json::parse(std::ifstream(world.dir.file("plain/manifest.json"))).contains("memory_halves"));
  EXPECT_EQ(fs::file_size(kept_dir + "/region_halves.bin"), 12u * 6 * 16 * 4);
  EXPECT_NO_THROW(kept->verify());
  const auto halves = kept->store()->images({4, 1}, true);
  ASSERT_TRUE(halves.text_halves.defined());
  EXPECT_FALSE(kept->store()->images({4, 1}, false).text_halves.defined());
  const auto regions = plain->store()->images({4, 1}, true).regions;
  EXPECT_LE((halves.text_halves - kept->model().net->text_memory().context_half(regions)).abs().max().item<double>(),
            1e-6);

  const auto same = [](const std::vector<imram::Hit>& a, const std::vector<imram::Hit>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t r = 0; r < a.size(); ++r) {
      EXPECT_EQ(a[r].index, b[r].index) << "rank " << r;
      EXPECT_NEAR(a[r].score, b[r].score, 1e-5) << "rank " << r;
    }
  };
  for (const std::int64_t shortlist : {0, 5}) {
    for (const std::string text : {"a red circle left of a blue square", "small green star"})
      same(plain->searcher(imram::GallerySide::Images, shortlist)->search(plain->text_query(text), 12, nullptr),
           kept->searcher(imram::GallerySide::Images, shortlist)->search(kept->text_query(text), 12, nullptr));
    same(plain->searcher(imram::GallerySide::Captions, shortlist)->search(plain->image_query(3), 20, nullptr),
         kept->searcher(imram::GallerySide::Captions, shortlist)->search(kept->image_query(3), 20, nullptr));
  }

  const auto halves_file = kept_dir + "/region_halves.bin";
  {
    std::fstream file(halves_file, std::ios::binary | std::ios::in | std::ios::out);
    file.seekp(40);
    file.write("\x7f\x7f\x7f\x7f", 4);
  }
  EXPECT_THROW(imram::GalleryIndex::open(kept_dir)->verify(), imram::Error);
  fs::resize_file(halves_file, fs::file_size(halves_file) - 4);
  try {
    imram::GalleryIndex::open(kept_dir);
    ADD_FAILURE() << "opened a truncated store of halves";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find("region_halves.bin: truncated"), std::string::npos) << e.what();
  }
}

// Without an nprobe of its own, an inverted-file search visits enough lists to hold about twice
// the items asked for: a long first list is not silently cut short by 32 lists.
TEST(Index, DefaultNprobeGrowsWithTheItemsAsked) {
  EXPECT_EQ(imram::default_nprobe(100, 1024, 500000), 32);
  EXPECT_EQ(imram::default_nprobe(20000, 1024, 500000), 82);
  EXPECT_EQ(imram::default_nprobe(400000, 1024, 500000), 1024);
  EXPECT_EQ(imram::default_nprobe(12, 4, 12), 4);
}

// nprobe is a parameter of the call: it changes what that search visits and nothing else.
TEST(Index, SearchParametersApplyToOneCall) {
  World world;
  const auto index = imram::GalleryIndex::open(world.build("index", "float32", "test", "IVF4,Flat"));
  const auto stage1 = index->stage1(imram::GallerySide::Images);
  const auto query = index->text_query("a red circle left of a blue square");
  imram::SearchParams one_list;
  one_list.nprobe = 1;
  const auto narrow = stage1->search(query, 12, nullptr, one_list);
  const auto wide = stage1->search(query, 12, nullptr);  // default nprobe: every one of the 4 lists
  EXPECT_LT(narrow.size(), 12u);
  ASSERT_EQ(wide.size(), 12u);
  const auto again = stage1->search(query, 12, nullptr);
  ASSERT_EQ(again.size(), 12u);
  for (std::size_t r = 0; r < wide.size(); ++r) EXPECT_EQ(again[r].index, wide[r].index);
  // The re-rank searcher passes the parameters to its shortlist.
  const auto reranked = index->searcher(imram::GallerySide::Images, 12)->search(query, 12, nullptr, one_list);
  EXPECT_EQ(reranked.size(), narrow.size());
  // So does the sampled evaluation: with every list the results cover the gallery.
  imram::SampledEvalOptions sampled;
  sampled.queries = 20;
  sampled.image_queries = 0;
  sampled.show_progress = false;
  sampled.settings = {{12, 0}};
  const auto every_list = imram::evaluate_index_sampled(*index, sampled).points.front().text_to_image;
  sampled.params = one_list;
  const auto one = imram::evaluate_index_sampled(*index, sampled).points.front().text_to_image;
  EXPECT_DOUBLE_EQ(every_list.top10_in_shortlist, 1.0);
  EXPECT_LT(one.top10_in_shortlist, 1.0);
}

TEST(Index, RerankScoresAreTheEngineScores) {
  World world;
  const auto model = imram::load_model(world.dir.file("model"));
  const auto split = imram::PrecompSplit::open(world.dir.file("data"), "test");
  const auto expected = exhaustive_scores(model, split);
  for (const std::string store : {"float32", "float16"}) {
    const auto index = imram::GalleryIndex::open(world.build("index-" + store, store));
    // Bounds: float32 stores the engine's own tensors; float16 rounds each stored component
    // to 11 significant bits, which moves a K=2 score sum by at most a few 1e-3 here.
    const double bound = store == "float32" ? 1e-5 : 5e-3;
    double worst = 0;
    for (std::int64_t j = 0; j < split.num_captions(); j += 7) {
      const auto hits = index->searcher(imram::GallerySide::Images, 5)
                            ->search(index->text_query(split.captions()[std::size_t(j)]), 5, nullptr);
      ASSERT_EQ(hits.size(), 5u);
      for (const auto& hit : hits) {
        const double diff = std::abs(hit.score - expected[hit.index][j].item<double>());
        worst = std::max(worst, diff);
        EXPECT_LE(diff, bound) << store << " image " << hit.index << " caption " << j;
      }
    }
    for (std::int64_t i = 0; i < split.num_images(); i += 5) {
      const auto hits = index->searcher(imram::GallerySide::Captions, 10)->search(index->image_query(i), 10, nullptr);
      for (const auto& hit : hits)
        EXPECT_LE(std::abs(hit.score - expected[i][hit.index].item<double>()), bound) << store;
    }
    if (store == "float16") {
      EXPECT_GT(worst, 0.0);  // float16 really is stored
    }
  }
}

TEST(Index, AddingInTwoPartsEqualsOneBuild) {
  World world;
  // dev (6 images) then test (12) added to one index, against one index of both.
  imram::IndexOptions options;
  options.show_progress = false;
  options.store = imram::StoreDType::Float32;
  {
    auto writer = imram::IndexWriter::create(world.dir.file("one"), world.dir.file("model"), options);
    writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "dev"));
    writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "test"));
    writer.commit();
  }
  {
    auto writer = imram::IndexWriter::create(world.dir.file("two"), world.dir.file("model"), options);
    writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "dev"));
    writer.commit();
  }
  const auto codebook_of = [&](const std::string& index) {
    std::ifstream in(world.dir.file(index + "/region_codebook.bin"), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const auto first_codebook = codebook_of("two");
  ASSERT_FALSE(first_codebook.empty());
  {
    auto writer = imram::IndexWriter::append(world.dir.file("two"), false);
    writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "test"));
    writer.commit();
  }
  // An addition codes its fragments with the codebook the index has: learned once, from the first.
  EXPECT_EQ(codebook_of("two"), first_codebook);
  EXPECT_NE(codebook_of("one"), first_codebook);
  const auto one = imram::GalleryIndex::open(world.dir.file("one")),
             two = imram::GalleryIndex::open(world.dir.file("two"));
  EXPECT_EQ(two->num_images(), 18);
  EXPECT_EQ(two->num_captions(), 90);
  EXPECT_EQ(two->caption_texts(), one->caption_texts());
  ASSERT_TRUE(two->described());
  EXPECT_EQ(two->image_info(17).description, one->image_info(17).description);
  // The second split's twins are its own images, counted after the first split's.
  EXPECT_EQ(two->image_info(6 + 1).twin, one->image_info(6 + 1).twin);
  EXPECT_EQ(two->image_info(12 + 1).twin, 12);
  two->verify();
  const auto manifest_one = nlohmann::json::parse(std::ifstream(world.dir.file("one/manifest.json")));
  const auto manifest_two = nlohmann::json::parse(std::ifstream(world.dir.file("two/manifest.json")));
  // Same bytes, same checksums; the FAISS files are named by their generation (1 and 2), and the
  // codes follow each index's own codebook (the Gram matrices are the items' own).
  auto store_files = [](nlohmann::json files) {
    for (const auto* name : {"images.1.faiss", "captions.1.faiss", "images.2.faiss", "captions.2.faiss",
                             "region_codes.bin", "word_codes.bin", "region_codebook.bin", "word_codebook.bin"})
      files.erase(name);
    return files;
  };
  EXPECT_EQ(store_files(manifest_one["files"]), store_files(manifest_two["files"]));
  EXPECT_TRUE(manifest_two["files"].contains("images.2.faiss"));
  EXPECT_FALSE(fs::exists(world.dir.file("two/images.1.faiss")));  // the replaced generation is gone
  for (const std::string text : {"a blue heart", "two red squares"}) {
    const auto a = one->searcher(imram::GallerySide::Images, 8)->search(one->text_query(text), 8, nullptr);
    const auto b = two->searcher(imram::GallerySide::Images, 8)->search(two->text_query(text), 8, nullptr);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t r = 0; r < a.size(); ++r) {
      EXPECT_EQ(a[r].index, b[r].index);
      EXPECT_DOUBLE_EQ(a[r].score, b[r].score);
      EXPECT_NEAR(*a[r].stage1, *b[r].stage1, 1e-6);
    }
  }
}

TEST(Index, RefusesAnotherModelAndDamagedFiles) {
  World world;
  const auto dir = world.build("index");
  imram::save_model(world.dir.file("other"), small_model(world.dir.file("data/vocab.json"), 6, /*seed=*/2));
  EXPECT_NO_THROW(imram::GalleryIndex::open(dir, torch::kCPU, world.dir.file("model")));
  try {
    imram::GalleryIndex::open(dir, torch::kCPU, world.dir.file("other"));
    ADD_FAILURE() << "opened with another model";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fingerprint"), std::string::npos) << e.what();
  }
  // A weight of the index's own model copy changed behind its back.
  fs::copy_file(world.dir.file("other/weights/linear_t2i.weight.npy"), dir + "/model/weights/linear_t2i.weight.npy",
                fs::copy_options::overwrite_existing);
  EXPECT_THROW(imram::GalleryIndex::open(dir), imram::Error);

  const auto dir2 = world.build("index2");
  const auto regions = dir2 + "/regions.bin";
  fs::resize_file(regions, fs::file_size(regions) - 4);
  try {
    imram::GalleryIndex::open(dir2);
    ADD_FAILURE() << "opened a truncated store";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find("regions.bin: truncated"), std::string::npos) << e.what();
  }
  const auto dir3 = world.build("index3");
  std::ofstream(dir3 + "/images.1.faiss", std::ios::binary | std::ios::trunc) << "not faiss";
  EXPECT_THROW(imram::GalleryIndex::open(dir3), imram::Error);
  const auto dir4 = world.build("index4");
  {
    std::fstream words(dir4 + "/words.bin", std::ios::binary | std::ios::in | std::ios::out);
    words.seekp(16);
    words.write("\x7f\x7f\x7f\x7f", 4);
  }
  const auto opened = imram::GalleryIndex::open(dir4);
  EXPECT_THROW(opened->verify(), imram::Error);

  // Build refuses to replace what is not an index.
  fs::create_directories(world.dir.file("notes"));
  std::ofstream(world.dir.file("notes/mine.txt")) << "keep";
  EXPECT_THROW(world.build("notes"), imram::Error);
  EXPECT_TRUE(fs::exists(world.dir.file("notes/mine.txt")));
}

TEST(Index, WithoutAGlobalHeadSearchesExhaustivelyAndSaysWhyNotTwoStage) {
  World world;
  imram::save_model(world.dir.file("model"), small_model(world.dir.file("data/vocab.json"), 0));
  const auto index = imram::GalleryIndex::open(world.build("index"));
  EXPECT_FALSE(index->has_shortlist());
  EXPECT_EQ(index->searcher(imram::GallerySide::Images, 0)->search(index->text_query("red"), 3, nullptr).size(), 3u);
  EXPECT_THROW(index->searcher(imram::GallerySide::Images, 10), imram::Error);
}

TEST(Index, UnknownWordsAreReported) {
  World world;
  const auto index = imram::GalleryIndex::open(world.build("index"));
  const auto query = index->text_query("zzyzx qwfp");
  EXPECT_EQ(query.unknown_words.size(), 2u);
  EXPECT_EQ(query.token_count, 2);
  EXPECT_FALSE(query.replaced_invalid_utf8);
  const auto latin1 = index->text_query("a red caf\xe9");
  EXPECT_TRUE(latin1.replaced_invalid_utf8);
  EXPECT_EQ(latin1.text, "a red caf\xef\xbf\xbd");  // U+FFFD
  EXPECT_THROW(index->text_query("   "), imram::Error);
  EXPECT_THROW(index->image_query(12), imram::Error);
}

TEST(Index, EvaluationAtFullShortlistEqualsExhaustive) {
  World world;
  const auto index = imram::GalleryIndex::open(world.build("index"));
  imram::TwoStageEvalOptions options;
  options.shortlist = 1000;
  options.show_progress = false;
  const auto result = imram::evaluate_index(*index, options);
  ASSERT_TRUE(result.exhaustive && result.two_stage && result.stage1);
  EXPECT_EQ(result.shortlist_images, 12);
  EXPECT_DOUBLE_EQ(result.two_stage->metrics.rsum, result.exhaustive->metrics.rsum);
  EXPECT_DOUBLE_EQ(result.two_stage->metrics.t2i.meanr, result.exhaustive->metrics.t2i.meanr);
  EXPECT_DOUBLE_EQ(result.two_stage->metrics.i2t.meanr, result.exhaustive->metrics.i2t.meanr);
  ASSERT_TRUE(result.two_stage->twin_accuracy && result.exhaustive->twin_accuracy);
  EXPECT_DOUBLE_EQ(*result.two_stage->twin_accuracy, *result.exhaustive->twin_accuracy);
  // The table prints the gap to exhaustive: none here, in every column.
  const auto table = imram::two_stage_table(result);
  const auto gap = table.substr(table.find("gap to exhaustive"));
  EXPECT_EQ(gap.substr(0, gap.find('\n')).find_first_of("123456789"), std::string::npos) << table;
  EXPECT_EQ(imram::two_stage_table(imram::evaluate_index(*index,
                                                         [&] {
                                                           auto without = options;
                                                           without.exhaustive = false;
                                                           return without;
                                                         }()))
                .find("gap to exhaustive"),
            std::string::npos);
  // A shortlist of 1 leaves the ranks beyond the first to stage 1.
  options.shortlist = 1;
  options.exhaustive = false;
  const auto narrow = imram::evaluate_index(*index, options);
  EXPECT_DOUBLE_EQ(narrow.two_stage->metrics.t2i.r10, narrow.stage1->metrics.t2i.r10);
  const auto json = nlohmann::json::parse(imram::two_stage_json(narrow));
  EXPECT_EQ(json["shortlist"], 1);
  EXPECT_TRUE(json.contains("stage1"));
}

// Every query sampled: the sample's exhaustive R@K is the full protocol's, and a shortlist that
// covers the gallery keeps every rank.
TEST(Index, SampledEvaluationHoldsTwoStageToExhaustiveImram) {
  World world;
  const auto index = imram::GalleryIndex::open(world.build("index"));
  imram::TwoStageEvalOptions full;
  full.shortlist = 0;
  full.show_progress = false;
  const auto full_result = imram::evaluate_index(*index, full);
  const auto reference = full_result.exhaustive->metrics;
  imram::SampledEvalOptions options;
  options.queries = 1000;  // more than either side holds: all of them
  options.settings = {{1000, 0}};
  options.show_progress = false;
  const auto covering_result = imram::evaluate_index_sampled(*index, options);
  ASSERT_EQ(covering_result.points.size(), 1u);
  const auto& covering = covering_result.points.front();
  EXPECT_EQ(covering.text_to_image.queries, 60);
  EXPECT_EQ(covering.image_to_text.queries, 12);
  EXPECT_DOUBLE_EQ(covering.text_to_image.exhaustive_r1, reference.t2i.r1);
  EXPECT_DOUBLE_EQ(covering.text_to_image.exhaustive_r5, reference.t2i.r5);
  EXPECT_DOUBLE_EQ(covering.image_to_text.exhaustive_r1, reference.i2t.r1);
  EXPECT_DOUBLE_EQ(covering.image_to_text.exhaustive_r10, reference.i2t.r10);
  // Twin accuracy of every caption sampled is the full protocol's; a covering shortlist keeps it.
  ASSERT_TRUE(full_result.exhaustive->twin_accuracy);
  EXPECT_GT(covering.text_to_image.twin_queries, 0);
  EXPECT_DOUBLE_EQ(covering.text_to_image.twin_exhaustive, *full_result.exhaustive->twin_accuracy);
  EXPECT_DOUBLE_EQ(covering.text_to_image.twin_two_stage, covering.text_to_image.twin_exhaustive);
  EXPECT_EQ(covering.image_to_text.twin_queries, 0);
  for (const auto* d : {&covering.text_to_image, &covering.image_to_text}) {
    EXPECT_DOUBLE_EQ(d->two_stage_r1, d->exhaustive_r1);
    EXPECT_DOUBLE_EQ(d->same_rank, 1.0);
    EXPECT_DOUBLE_EQ(d->top10_in_shortlist, 1.0);
  }
  options.queries = 20;
  options.image_queries = 0;  // text queries only
  // 1,000 on so small a gallery: step 1 scores it all, and the lists are named as they ran.
  options.settings = {{1, imram::kAutoPrefilter}};
  const auto narrow_result = imram::evaluate_index_sampled(*index, options);
  const auto& narrow = narrow_result.points.front();
  EXPECT_EQ(narrow.text_to_image.prefilter, 12);
  EXPECT_NE(imram::sampled_table(narrow_result).find("cascade 12 -> 1;"), std::string::npos)
      << imram::sampled_table(narrow_result);
  EXPECT_EQ(narrow.text_to_image.queries, 20);
  EXPECT_EQ(narrow.image_to_text.queries, 0);
  EXPECT_DOUBLE_EQ(narrow.text_to_image.top10_in_shortlist, 0.0);                   // 10 items cannot fit in 1
  EXPECT_LE(narrow.text_to_image.two_stage_r5, narrow.text_to_image.two_stage_r1);  // nothing beyond rank 1
  const auto json = nlohmann::json::parse(imram::sampled_json(narrow_result));
  EXPECT_EQ(json["shortlist"], 1);
  EXPECT_EQ(json["prefilter"], 12);
  EXPECT_EQ(json["t2i"]["prefilter"], 12);
  EXPECT_EQ(json["t2i"]["queries"], 20);

  // The automatic shortlist covers so small a gallery, and the ranks are compared within the
  // first `results` only: the order is exhaustive IMRAM's, but ten items cannot fit in three.
  // Several settings share one sample: each point is what that setting measures alone.
  options.settings = {{imram::kAutoShortlist, 0}, {1, imram::kAutoPrefilter}};
  options.results = 3;
  const auto swept = imram::evaluate_index_sampled(*index, options);
  ASSERT_EQ(swept.points.size(), 2u);
  const auto& t = swept.points.front().text_to_image;
  EXPECT_EQ(t.shortlist, index->num_images());
  EXPECT_EQ(t.results, 3);
  EXPECT_DOUBLE_EQ(t.same_rank, 1.0);
  EXPECT_DOUBLE_EQ(t.two_stage_r1, t.exhaustive_r1);
  EXPECT_DOUBLE_EQ(t.top1_in_shortlist, 1.0);
  EXPECT_DOUBLE_EQ(t.top10_in_shortlist, 0.0);
  EXPECT_LE(t.two_stage_r5, t.exhaustive_r5);
  const auto &alone = narrow.text_to_image, &second = swept.points.back().text_to_image;
  EXPECT_EQ(second.results, 1);
  EXPECT_DOUBLE_EQ(second.two_stage_r1, alone.two_stage_r1);
  EXPECT_DOUBLE_EQ(second.same_rank, alone.same_rank);
  EXPECT_DOUBLE_EQ(second.top1_in_shortlist, alone.top1_in_shortlist);
  EXPECT_DOUBLE_EQ(second.twin_two_stage, alone.twin_two_stage);
  const auto swept_json = nlohmann::json::parse(imram::sampled_json(swept));
  EXPECT_EQ(swept_json["t2i"]["results"], 3);
  EXPECT_EQ(swept_json["shortlist"], index->num_images());
  ASSERT_EQ(swept_json["points"].size(), 2u);
  EXPECT_EQ(swept_json["points"][1]["prefilter"], 12);
  EXPECT_EQ(swept_json["points"][1]["t2i"]["two_stage"]["r1"], alone.two_stage_r1);
  const auto table = imram::sampled_table(swept);
  EXPECT_NE(table.find("cascade 12 -> 1\n"), std::string::npos) << table;
  EXPECT_NE(table.find("two-stage, N=12\n"), std::string::npos) << table;
}

// Step 1 from the codes is exact step 1 when every fragment is its own centroid (a codebook as
// large as the fragments): text queries against images and image queries against captions (whose
// lengths differ: padded codes and Gram matrices), in each mode.
TEST(Codes, StepOneFromCodesIsExactStepOneWhenEveryFragmentIsItsOwnCentroid) {
  for (const auto mode : {imram::ImramMode::Text, imram::ImramMode::Image, imram::ImramMode::Full}) {
    World world;
    imram::save_model(world.dir.file("model_" + imram::to_string(mode)),
                      small_model(world.dir.file("data/vocab.json"), 6, 3, mode));
    imram::IndexOptions options;
    options.store = imram::StoreDType::Float32;
    options.codebook_size = std::int64_t(1) << 40;  // at most the fragments: every one its own centroid
    options.show_progress = false;
    {
      auto writer = imram::IndexWriter::create(world.dir.file("index"),
                                               world.dir.file("model_" + imram::to_string(mode)), options);
      writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "test"));
      writer.commit();
    }
    const auto index = imram::GalleryIndex::open(world.dir.file("index"));
    ASSERT_TRUE(index->has_codes(imram::GallerySide::Images));
    ASSERT_TRUE(index->has_codes(imram::GallerySide::Captions));
    for (const auto side : {imram::GallerySide::Images, imram::GallerySide::Captions}) {
      const bool images = side == imram::GallerySide::Images;
      const auto query = images ? index->text_query("a red circle left of a blue square") : index->image_query(4);
      const auto count = images ? index->num_images() : index->num_captions();
      std::vector<std::int64_t> ids;
      for (std::int64_t i = count - 1; i >= 0; --i) ids.push_back(i);  // any order: answered in it
      const imram::CodedFirstStep coded(index->model().net, index->store(), side);
      const auto got = coded.scores(query, ids);
      const imram::ImramRefiner exact(index->model().net, index->store(), side, 1);
      const auto expected = exact.refine({query}, ids, count, nullptr).front();
      ASSERT_EQ(got.size(), ids.size());
      for (const auto& hit : expected)
        EXPECT_NEAR(got[std::size_t(count - 1 - hit.index)], hit.score, 1e-5)
            << imram::to_string(mode) << (images ? ", image " : ", caption ") << hit.index;
    }
  }
}

// With a coarse codebook (the automatic one), the cascade's coded step keeps `step1` of FAISS's
// list, exact step 1 the best of those, and the final scores are IMRAM's own; where no list
// leaves anything out it is exhaustive search, bit for bit.
TEST(Codes, TheCodedCascadeKeepsExactScoresAndEqualsExhaustiveWhenItKeepsEverything) {
  World world;
  const auto index = imram::GalleryIndex::open(world.build("index", "float16"));
  ASSERT_TRUE(index->has_codes(imram::GallerySide::Images));
  const auto exhaustive = index->searcher(imram::GallerySide::Images, 0);
  const auto everything = index->searcher(imram::GallerySide::Images, 12, 12, 12);
  const auto cascade = index->searcher(imram::GallerySide::Images, 3, 12, 6);
  const auto* rerank = dynamic_cast<const imram::RerankSearcher*>(cascade.get());
  ASSERT_NE(rerank, nullptr);
  EXPECT_EQ(rerank->step1(), 6);
  const imram::CodedFirstStep coded(index->model().net, index->store(), imram::GallerySide::Images);
  std::vector<std::int64_t> all(12);
  for (std::int64_t i = 0; i < 12; ++i) all[std::size_t(i)] = i;
  for (const std::string text : {"a red circle left of a blue square", "small green star", "two blue hearts"}) {
    const auto query = index->text_query(text);
    const auto expected = exhaustive->search(query, 12, nullptr), kept_all = everything->search(query, 12, nullptr);
    ASSERT_EQ(kept_all.size(), 12u);
    for (std::size_t r = 0; r < expected.size(); ++r) {
      EXPECT_EQ(expected[r].index, kept_all[r].index);
      EXPECT_EQ(expected[r].score, kept_all[r].score);
    }
    imram::SearchStats stats;
    const auto hits = cascade->search(query, 3, &stats);
    ASSERT_EQ(hits.size(), 3u);
    EXPECT_GT(stats.coded_ms, 0);
    std::vector<std::int64_t> coded_best;
    for (const auto& hit : coded.best(query, all, 6, nullptr)) coded_best.push_back(hit.index);
    for (const auto& hit : hits) {
      EXPECT_NE(std::find(coded_best.begin(), coded_best.end(), hit.index), coded_best.end())
          << "not kept by the coded step";
      const auto same =
          std::find_if(expected.begin(), expected.end(), [&](const auto& e) { return e.index == hit.index; });
      ASSERT_NE(same, expected.end());
      EXPECT_NEAR(hit.score, same->score, 1e-6) << "image " << hit.index;
    }
  }
}

// An index built without codes (or before they existed) searches as it did: the cascade's first
// step reads its candidates from the store; `step1 0` does the same on an index with codes.
TEST(Codes, AnIndexWithoutCodesSearchesAsBefore) {
  World world;
  imram::IndexOptions options;
  options.store = imram::StoreDType::Float32;
  options.codes = false;
  options.show_progress = false;
  {
    auto writer = imram::IndexWriter::create(world.dir.file("plain"), world.dir.file("model"), options);
    writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "test"));
    writer.commit();
  }
  const auto plain = imram::GalleryIndex::open(world.dir.file("plain"));
  EXPECT_FALSE(plain->has_codes(imram::GallerySide::Images));
  EXPECT_FALSE(fs::exists(world.dir.file("plain/region_codes.bin")));
  EXPECT_FALSE(nlohmann::json::parse(std::ifstream(world.dir.file("plain/manifest.json"))).contains("codes"));
  const auto coded = imram::GalleryIndex::open(world.build("coded"));
  for (const std::string text : {"a red circle", "two blue hearts"}) {
    const auto a = plain->searcher(imram::GallerySide::Images, 3, 10)->search(plain->text_query(text), 3, nullptr);
    const auto b = coded->searcher(imram::GallerySide::Images, 3, 10, 0)->search(coded->text_query(text), 3, nullptr);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t r = 0; r < a.size(); ++r) {
      EXPECT_EQ(a[r].index, b[r].index);
      EXPECT_EQ(a[r].score, b[r].score);
    }
  }
  EXPECT_THROW(imram::CodedFirstStep(plain->model().net, plain->store(), imram::GallerySide::Images), imram::Error);
}

// A code outside its codebook would read past the query's table: refused on opening, by file.
TEST(Codes, ACodeOutsideTheCodebookIsRefusedNamingTheFile) {
  World world;
  const auto dir = world.build("index");
  {
    std::fstream file(dir + "/word_codes.bin", std::ios::in | std::ios::out | std::ios::binary);
    const std::int32_t bad = 1 << 20;
    file.seekp(8);
    file.write(reinterpret_cast<const char*>(&bad), sizeof bad);
  }
  try {
    imram::GalleryIndex::open(dir);
    FAIL() << "opened";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find("word_codes.bin: fragment 2 has code 1048576"), std::string::npos) << e.what();
  }
}

// A fragment decodes to its centroid plus, per value, the value of the bucket its residual fell
// in; more bits come closer, and a fragment that is its own centroid decodes exactly.
TEST(Residuals, DecodeToTheCentroidPlusTheBucketOfEachResidualCloserWithMoreBits) {
  torch::manual_seed(5);
  const std::int64_t n = 600, d = 16;
  const auto rows = torch::randn({n, d});
  const auto codebook = imram::train_codebook(rows, 8);
  const auto codes = imram::nearest_centroids(codebook, rows);
  const auto centroids = codebook.index_select(0, codes.to(torch::kInt64));
  const auto residuals = rows - centroids;
  const auto centroid_error = residuals.pow(2).mean().item<double>();
  const auto decode = [&](const torch::Tensor& packed, const imram::ResidualBuckets& buckets) {
    auto out = torch::empty({n, d});
    imram::decode_fragments(codebook.data_ptr<float>(), d, codes.data_ptr<std::int32_t>(),
                            packed.data_ptr<std::uint8_t>(), n, buckets, out.data_ptr<float>());
    return out;
  };
  std::map<int, double> error;
  for (const int bits : {1, 2, 4, 8}) {
    const auto buckets = imram::train_residual_buckets(residuals, bits);
    EXPECT_NO_THROW(buckets.check("buckets"));
    const auto packed = imram::encode_residuals(codebook, rows, codes, buckets);
    ASSERT_EQ(packed.sizes(), (std::vector<std::int64_t>{n, d * bits / 8}));
    const auto decoded = decode(packed, buckets);
    for (std::int64_t i = 0; i < 3; ++i)
      for (std::int64_t j = 0; j < d; ++j) {
        const auto r = residuals[i][j].item<float>();
        const auto bucket =
            std::upper_bound(buckets.cutoffs.begin(), buckets.cutoffs.end(), r) - buckets.cutoffs.begin();
        EXPECT_EQ(decoded[i][j].item<float>(), centroids[i][j].item<float>() + buckets.values[std::size_t(bucket)])
            << bits << " bits, row " << i << ", value " << j;
      }
    error[bits] = (rows - decoded).pow(2).mean().item<double>();
  }
  EXPECT_LT(error[1], 0.5 * centroid_error);
  EXPECT_LT(error[2], 0.2 * centroid_error);
  EXPECT_LT(error[4], error[2]);
  EXPECT_LT(error[8], 0.01 * centroid_error);
  // Every row its own centroid: nothing left to quantize.
  const auto own = imram::train_codebook(rows, n);
  const auto own_codes = imram::nearest_centroids(own, rows);
  const auto buckets = imram::train_residual_buckets(torch::zeros({n, d}), 2);
  const auto packed = imram::encode_residuals(own, rows, own_codes, buckets);
  auto decoded = torch::empty({n, d});
  imram::decode_fragments(own.data_ptr<float>(), d, own_codes.data_ptr<std::int32_t>(), packed.data_ptr<std::uint8_t>(),
                          n, buckets, decoded.data_ptr<float>());
  EXPECT_TRUE(torch::equal(decoded, rows));
  EXPECT_THROW(imram::encode_residuals(codebook, torch::randn({4, 3}), codes.narrow(0, 0, 4), buckets), imram::Error);
}

// An index built without its exact store decodes every fragment it reads; when every fragment is
// its own centroid that is exact, and it searches as the index with the store does, bit for bit,
// by text and by image, exhaustively and with the default cascade.
TEST(Residuals, AnIndexWithoutItsExactStoreSearchesAsTheExactOneWhenEveryFragmentIsItsOwnCentroid) {
  World world;
  const auto build = [&](const std::string& name, bool exact_store) {
    imram::IndexOptions options;
    options.store = imram::StoreDType::Float16;
    options.codebook_size = std::int64_t(1) << 40;  // at most the fragments: every one its own centroid
    options.residual_bits = 2;
    options.exact_store = exact_store;
    options.show_progress = false;
    auto writer = imram::IndexWriter::create(world.dir.file(name), world.dir.file("model"), options);
    writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "test"));
    writer.commit();
    return imram::GalleryIndex::open(world.dir.file(name));
  };
  const auto exact = build("exact", true), compressed = build("compressed", false);
  EXPECT_TRUE(exact->store()->exact());
  EXPECT_FALSE(compressed->store()->exact());
  const auto manifest = nlohmann::json::parse(imram::test::read_text(world.dir.file("compressed/manifest.json")));
  EXPECT_EQ(manifest["exact_store"], false);
  EXPECT_EQ(manifest["codes"]["residual_bits"], 2);
  for (const auto* name : {"regions.bin", "words.bin"}) {
    EXPECT_FALSE(fs::exists(world.dir.file(std::string("compressed/") + name))) << name;
    EXPECT_FALSE(manifest["files"].contains(name)) << name;
    EXPECT_TRUE(fs::exists(world.dir.file(std::string("exact/") + name))) << name;
  }
  compressed->verify();
  for (const auto side : {imram::GallerySide::Images, imram::GallerySide::Captions}) {
    const bool by_text = side == imram::GallerySide::Images;
    for (const auto shortlist : {std::int64_t(0), imram::kDefaultShortlist}) {
      const auto a = exact->searcher(side, shortlist), b = compressed->searcher(side, shortlist);
      for (int q = 0; q < 3; ++q) {
        const std::string text = q == 0 ? "a red circle" : q == 1 ? "two blue hearts" : "small green star";
        const auto hits_a = a->search(by_text ? exact->text_query(text) : exact->image_query(q * 4), 10, nullptr);
        const auto hits_b =
            b->search(by_text ? compressed->text_query(text) : compressed->image_query(q * 4), 10, nullptr);
        ASSERT_EQ(hits_a.size(), hits_b.size());
        for (std::size_t r = 0; r < hits_a.size(); ++r) {
          EXPECT_EQ(hits_a[r].index, hits_b[r].index) << "query " << q << ", rank " << r;
          EXPECT_EQ(hits_a[r].score, hits_b[r].score) << "query " << q << ", rank " << r;
        }
      }
    }
  }
}

// `index add` to an index without its exact store codes and compresses the added fragments with
// the codebook and buckets of the first build, as an index that keeps its store does: the same
// codes and residuals, byte for byte; the decoded fragments are closer to the exact ones than
// their centroids are.
TEST(Residuals, AddingToAnIndexWithoutItsExactStoreCompressesAsTheIndexWithIt) {
  World world;
  const auto build_in_two = [&](const std::string& name, bool exact_store) {
    imram::IndexOptions options;
    options.store = imram::StoreDType::Float32;
    options.residual_bits = 4;
    // Few centroids: the first split's 36 regions would otherwise nearly be the codebook, and
    // buckets learned from their tiny residuals would not fit the second split's.
    options.codebook_size = 4;
    options.exact_store = exact_store;
    options.show_progress = false;
    {
      auto writer = imram::IndexWriter::create(world.dir.file(name), world.dir.file("model"), options);
      writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "dev"));
      writer.commit();
    }
    auto writer = imram::IndexWriter::append(world.dir.file(name), false);
    writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "test"));
    writer.commit();
    return imram::GalleryIndex::open(world.dir.file(name));
  };
  const auto exact = build_in_two("exact", true), compressed = build_in_two("compressed", false);
  EXPECT_FALSE(fs::exists(world.dir.file("compressed/regions.bin")));
  EXPECT_FALSE(fs::exists(world.dir.file("compressed/words.bin")));
  ASSERT_EQ(compressed->num_images(), 18);
  for (const auto* name : {"region_codes.bin", "word_codes.bin", "region_residuals.bin", "word_residuals.bin",
                           "region_codebook.bin", "word_codebook.bin"})
    EXPECT_EQ(imram::test::read_text(world.dir.file(std::string("compressed/") + name)),
              imram::test::read_text(world.dir.file(std::string("exact/") + name)))
        << name;
  std::vector<std::int64_t> ids(18);
  for (std::int64_t i = 0; i < 18; ++i) ids[std::size_t(i)] = i;
  const auto truth = exact->store()->images(ids).regions, decoded = compressed->store()->images(ids).regions;
  const auto coded = compressed->store()->coded_images(ids);
  const auto centroids =
      compressed->store()->codebook(true).index_select(0, coded.codes.reshape({-1})).view(truth.sizes());
  EXPECT_LT((decoded - truth).pow(2).sum().item<double>(), 0.25 * (centroids - truth).pow(2).sum().item<double>());
  const auto words_truth = exact->store()->captions(ids).words, words = compressed->store()->captions(ids).words;
  EXPECT_LT((words - words_truth).abs().max().item<double>(), (words_truth.abs().max()).item<double>());
  compressed->verify();
}

// Residuals come with codes and bits that pack a fragment into whole bytes; an index without its
// store needs them; a manifest of the previous version (4, before residuals) still opens.
TEST(Residuals, OptionsAndManifestsThatCannotDecodeAreRefused) {
  World world;
  const auto refused = [&](imram::IndexOptions options, const std::string& mention) {
    options.show_progress = false;
    try {
      imram::IndexWriter::create(world.dir.file("refused"), world.dir.file("model"), options);
      ADD_FAILURE() << mention;
    } catch (const imram::Error& e) {
      EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
    }
  };
  imram::IndexOptions options;
  options.exact_store = false;
  options.residual_bits = 0;
  refused(options, "give residual bits");
  options.residual_bits = 3;
  refused(options, "residuals of 3 bits");
  options.residual_bits = 2;
  options.codes = false;
  refused(options, "drop --no-codes");
  options.codes = true;
  options.memory_halves = true;
  refused(options, "keep the exact store");

  const auto dir = world.build("index");
  const auto original = nlohmann::json::parse(imram::test::read_text(dir + "/manifest.json"));
  auto old = original;
  old["version"] = 4;
  imram::test::write_text(dir + "/manifest.json", old.dump());
  EXPECT_NO_THROW(imram::GalleryIndex::open(dir));
  auto without_store = original;
  without_store["exact_store"] = false;
  imram::test::write_text(dir + "/manifest.json", without_store.dump());
  try {
    imram::GalleryIndex::open(dir);
    ADD_FAILURE() << "an index with neither store nor residuals opened";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/manifest.json: bad index manifest (no exact store and no residuals"),
              std::string::npos)
        << e.what();
  }
  imram::test::write_text(dir + "/manifest.json", original.dump());

  imram::IndexOptions compressed;
  compressed.exact_store = false;
  compressed.residual_bits = 2;
  compressed.show_progress = false;
  {
    auto writer = imram::IndexWriter::create(world.dir.file("compressed"), world.dir.file("model"), compressed);
    writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "test"));
    writer.commit();
  }
  const auto path = world.dir.file("compressed/manifest.json");
  const auto good = nlohmann::json::parse(imram::test::read_text(path));
  const std::vector<std::pair<std::string, nlohmann::json>> edits = {
      {"/codes/region_buckets/cutoffs", {0.5, 0.1, 0.2}},
      {"/codes/region_buckets/values", {0.0, 1.0}},
      {"/codes/word_buckets/bits", 4},
      {"/codes/residual_bits", 4},
      {"/codes/region_buckets/values", {0.0, 1.0, "x", 2.0}},
      {"/files/region_residuals.bin/bytes", 7}};
  for (const auto& [pointer, value] : edits) {
    auto edited = good;
    edited[nlohmann::json::json_pointer(pointer)] = value;
    imram::test::write_text(path, edited.dump());
    try {
      imram::GalleryIndex::open(world.dir.file("compressed"));
      ADD_FAILURE() << pointer << " = " << value.dump() << " was accepted";
    } catch (const imram::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": bad index manifest", 0), 0u) << pointer << ": " << e.what();
    }
  }
  imram::test::write_text(path, good.dump());
  EXPECT_NO_THROW(imram::GalleryIndex::open(world.dir.file("compressed")));
}

// What the commands say of an index without its exact store: `index build`'s summary, `search
// --json` (exact_scores false) and its text answer, `eval --index`'s table and JSON.
TEST(Residuals, TheCommandsSayTheScoresOfAnIndexWithoutItsStoreAreApproximate) {
  World world;
  const auto built = imram::test::imram_cli("--threads 1 index build --model " + world.dir.file("model") + " --data " +
                                            world.dir.file("data") + " --out " + world.dir.file("index") +
                                            " --no-exact-store --quiet");
  ASSERT_EQ(built.status, 0) << built.output;
  EXPECT_NE(built.output.find("no exact store (fragments decoded from residuals: scores approximate)"),
            std::string::npos)
      << built.output;
  const auto json = imram::test::imram_cli("--threads 1 search --index " + world.dir.file("index") +
                                           " --query 'a red circle' --json");
  ASSERT_EQ(json.status, 0) << json.output;
  const auto answer = nlohmann::json::parse(json.output.substr(json.output.find('{')));
  EXPECT_EQ(answer["exact_scores"], false);
  EXPECT_FALSE(answer["results"].empty());
  const auto text =
      imram::test::imram_cli("--threads 1 search --index " + world.dir.file("index") + " --query 'a red circle'");
  ASSERT_EQ(text.status, 0) << text.output;
  EXPECT_NE(text.output.find("scores approximate"), std::string::npos) << text.output;
  const auto evaluated = imram::test::imram_cli("--threads 1 eval --index " + world.dir.file("index") + " --json");
  ASSERT_EQ(evaluated.status, 0) << evaluated.output;
  EXPECT_EQ(nlohmann::json::parse(evaluated.output.substr(evaluated.output.find('{')))["exact_scores"], false);
  const auto table = imram::test::imram_cli("--threads 1 eval --index " + world.dir.file("index"));
  ASSERT_EQ(table.status, 0) << table.output;
  EXPECT_NE(table.output.find("every score above, exhaustive ones too, is from fragments decoded"), std::string::npos)
      << table.output;
  const auto exact = imram::test::imram_cli("--threads 1 search --index " + world.build("exact", "float16") +
                                            " --query 'a red circle' --json");
  ASSERT_EQ(exact.status, 0) << exact.output;
  EXPECT_EQ(nlohmann::json::parse(exact.output.substr(exact.output.find('{')))["exact_scores"], true);
}

TEST(GlobalHead, OptionalInTheModelDirectoryAndLeftOutOfExports) {
  World world;
  const auto with_head = imram::load_model(world.dir.file("model"));
  ASSERT_TRUE(with_head.net->global_head);
  EXPECT_EQ(with_head.config().global_head, 6);
  imram::save_model(world.dir.file("plain"), small_model(world.dir.file("data/vocab.json"), 0));
  const auto config = nlohmann::json::parse(std::ifstream(world.dir.file("plain/config.json")));
  EXPECT_FALSE(config.contains("global_head"));
  EXPECT_FALSE(imram::load_model(world.dir.file("plain")).net->global_head);
  imram::export_reference_model(with_head, world.dir.file("exported"));
  EXPECT_FALSE(fs::exists(world.dir.file("exported/weights/global_head.image.weight.npy")));
  EXPECT_TRUE(fs::exists(world.dir.file("model/weights/global_head.image.weight.npy")));
}

TEST(GlobalHead, JointLossTrainsTheHeadWithTheEncoders) {
  World world;
  auto model = imram::load_model(world.dir.file("model"));
  const auto split = imram::PrecompSplit::open(world.dir.file("data"), "train");
  const auto ids = imram::encode_caption_texts(*model.vocabulary, split.captions(), split.captions_path());
  std::vector<std::int64_t> images;
  imram::TokenIds batch_ids;
  for (std::int64_t j = 0; j < 8; ++j) {
    images.push_back(split.image_of_caption(j * 5));
    batch_ids.push_back(ids[std::size_t(j * 5)]);
  }
  const auto padded = imram::pad_captions(batch_ids, 0, 8);
  imram::Batch batch{imram::tensor_view(split.features()).index_select(0, torch::tensor(images)), padded.ids,
                     padded.lengths};
  const auto head_before = model.net->global_head->image->weight.clone();
  const auto encoder_before = model.net->img_enc->fc_local->weight.clone();
  auto optimizer = imram::make_optimizer(*model.net, 1e-2);
  imram::LossOptions plain;
  auto copy = imram::load_model(world.dir.file("model"));
  auto copy_optimizer = imram::make_optimizer(*copy.net, 1e-2);
  const auto without = imram::train_step(*copy.net, copy_optimizer, batch, plain);
  imram::LossOptions joint;
  joint.global_weight = 0.5;
  const auto with = imram::train_step(*model.net, optimizer, batch, joint);
  EXPECT_GT(with.global_loss, 0);
  EXPECT_NEAR(with.loss, without.loss + 0.5 * with.global_loss, 1e-5);
  EXPECT_FALSE(torch::equal(head_before, model.net->global_head->image->weight));
  EXPECT_FALSE(torch::equal(encoder_before, model.net->img_enc->fc_local->weight));
  EXPECT_TRUE(torch::equal(head_before, copy.net->global_head->image->weight));  // no global term, no head gradient
}

TEST(GlobalHead, TrainGlobalFitsOnlyTheHead) {
  World world;
  imram::save_model(world.dir.file("plain"), small_model(world.dir.file("data/vocab.json"), 0));
  auto model = imram::load_model(world.dir.file("plain"));
  const auto encoder_before = model.net->img_enc->fc_local->weight.clone();
  imram::GlobalFitOptions options;
  options.epochs = 8;
  options.batch_size = 16;
  options.dim = 5;
  options.show_progress = false;
  const auto summary =
      imram::fit_global_head(model, imram::PrecompSplit::open(world.dir.file("data"), "train"), options);
  ASSERT_TRUE(model.net->global_head);
  EXPECT_EQ(model.config().global_head, 5);
  EXPECT_LT(summary.last_epoch_loss, summary.first_epoch_loss);
  EXPECT_TRUE(torch::equal(encoder_before, model.net->img_enc->fc_local->weight));
  imram::save_model(world.dir.file("fitted"), model);
  EXPECT_EQ(imram::load_model(world.dir.file("fitted")).config().global_head, 5);
}

using imram::test::read_text;
// The gpo pooling reads sorted values: the order of an item's fragments and whatever its padding
// holds must not matter, and it must not be the plain mean (or the learned weights do nothing).
TEST(GlobalHead, GpoPoolingIgnoresFragmentOrderAndPadding) {
  torch::manual_seed(3);
  imram::GlobalHead head(8, 6, imram::GlobalPooling::Gpo);
  torch::NoGradGuard no_grad;
  auto words = torch::randn({2, 5, 8});
  imram::EncodedCaptions captions{words.clone(), torch::tensor({5, 3}, torch::kInt64)};
  const auto base = head->embed_captions(captions);
  auto shuffled = words.clone();
  shuffled[0] = words[0].index_select(0, torch::tensor({4, 2, 0, 1, 3}));
  shuffled[1].narrow(0, 3, 2).fill_(1e6);  // padding: anything
  const auto moved = head->embed_captions({shuffled, captions.lengths});
  EXPECT_TRUE(torch::allclose(base, moved, 1e-5, 1e-6)) << base << moved;
  imram::EncodedImages regions{words.clone(),
                               torch::tensor({{true, true, true, true, true}, {true, true, true, false, false}})};
  EXPECT_TRUE(torch::allclose(head->embed_images(regions).norm(2, 1), torch::ones({2}), 1e-5, 1e-6));
  // The weights over positions sum to 1 for every count.
  for (const std::int64_t count : {1, 2, 7}) {
    const auto w = head->text_pooling->position_weights(count);
    EXPECT_EQ(w.size(0), count);
    EXPECT_NEAR(w.sum().item<double>(), 1.0, 1e-5);
  }
  EXPECT_THROW(imram::parse_global_pooling("max"), imram::Error);
}

// Models made before gpo existed carry no "global_pooling" key: they load with the mean head and
// their weights, and score as before; a gpo head round-trips through its directory.
// `imram eval` of the first stage alone (evaluate_global): every pair scored by the cosine of the
// mean head's embeddings, computed here from the head's definition in float64, and the metrics of
// that matrix.
TEST(GlobalHead, EvaluateGlobalScoresEachPairByItsEmbeddingsCosine) {
  World world;
  auto model = imram::load_model(world.dir.file("model"));
  ASSERT_EQ(model.config().global_pooling, imram::GlobalPooling::Mean);
  const auto split = imram::PrecompSplit::open(world.dir.file("data"), "test");
  imram::EvalOptions options;
  options.show_progress = false;
  const auto result = imram::evaluate_global(*model.net, *model.vocabulary, split, options);

  torch::NoGradGuard no_grad;
  const auto images = imram::encode_image_file(*model.net, split.features());
  const auto captions = imram::encode_caption_ids(
      *model.net, imram::encode_caption_texts(*model.vocabulary, split.captions(), split.captions_path()));
  ASSERT_FALSE(images.region_mask.defined());
  const auto embed = [](const torch::Tensor& pooled, const torch::nn::Linear& head) {
    const auto mapped = torch::matmul(pooled, head->weight.to(torch::kFloat64).t()) + head->bias.to(torch::kFloat64);
    return mapped / mapped.norm(2, 1, true);
  };
  const auto image_mean = images.regions.to(torch::kFloat64).mean(1);
  auto caption_mean = torch::zeros({captions.words.size(0), captions.words.size(2)}, torch::kFloat64);
  for (std::int64_t j = 0; j < captions.words.size(0); ++j)
    caption_mean[j] =
        captions.words[j].narrow(0, 0, captions.lengths[j].item<std::int64_t>()).to(torch::kFloat64).mean(0);
  const auto expected = torch::matmul(embed(image_mean, model.net->global_head->image),
                                      embed(caption_mean, model.net->global_head->text).t());
  ASSERT_EQ(result.sims.sizes(), expected.sizes());
  EXPECT_LE((result.sims.to(torch::kFloat64) - expected).abs().max().item<double>(), 1e-5);
  const auto expected_metrics = imram::compute_metrics(expected.contiguous().data_ptr<double>(), expected.size(0),
                                                       expected.size(1), split.captions_per_image());
  EXPECT_EQ(result.metrics.i2t.r1, expected_metrics.i2t.r1);
  EXPECT_EQ(result.metrics.t2i.r1, expected_metrics.t2i.r1);
}

TEST(GlobalHead, ModelsWithoutAPoolingKeyKeepTheMeanHead) {
  World world;
  const auto config_text = read_text(world.dir.file("model/config.json"));
  EXPECT_EQ(config_text.find("global_pooling"), std::string::npos) << config_text;
  const auto index = imram::GalleryIndex::open(world.build("index"));
  auto model = imram::load_model(world.dir.file("model"));
  EXPECT_EQ(model.config().global_pooling, imram::GlobalPooling::Mean);
  ASSERT_TRUE(model.net->global_head->image);
  torch::NoGradGuard no_grad;
  const auto split = imram::PrecompSplit::open(world.dir.file("data"), "test");
  const auto encoded = imram::encode_image_file(*model.net, split.features());
  // The mean head from its definition (docs/model.md): the regions' mean, one affine map, unit length.
  ASSERT_FALSE(encoded.region_mask.defined());  // every image has all its regions
  const auto& head = *model.net->global_head->image;
  const auto mean = encoded.regions.to(torch::kFloat64).sum(1) / double(encoded.regions.size(1));
  const auto mapped = torch::matmul(mean, head.weight.to(torch::kFloat64).t()) + head.bias.to(torch::kFloat64);
  const auto expected = mapped / mapped.norm(2, 1, true);
  EXPECT_TRUE(torch::allclose(model.net->global_head->embed_images(encoded).to(torch::kFloat64), expected, 1e-5, 1e-6));

  imram::save_model(world.dir.file("plain"), small_model(world.dir.file("data/vocab.json"), 0));
  auto fitted = imram::load_model(world.dir.file("plain"));
  imram::GlobalFitOptions options;
  options.epochs = 1;
  options.batch_size = 16;
  options.show_progress = false;
  imram::fit_global_head(fitted, imram::PrecompSplit::open(world.dir.file("data"), "train"), options);
  imram::save_model(world.dir.file("gpo"), fitted);
  EXPECT_NE(read_text(world.dir.file("gpo/config.json")).find("\"global_pooling\": \"gpo\""), std::string::npos);
  auto reloaded = imram::load_model(world.dir.file("gpo"));
  EXPECT_EQ(reloaded.config().global_pooling, imram::GlobalPooling::Gpo);
  EXPECT_TRUE(
      torch::equal(fitted.net->global_head->embed_images(encoded), reloaded.net->global_head->embed_images(encoded)));
}

// Distillation mines and scores its candidates once and then trains like the hinge alone:
// the same seed gives the same head, bit for bit, and the teacher's term changes the fit.
TEST(GlobalHead, DistilledFitIsDeterministicGivenTheSeed) {
  World world;
  imram::save_model(world.dir.file("plain"), small_model(world.dir.file("data/vocab.json"), 0));
  const auto train = imram::PrecompSplit::open(world.dir.file("data"), "train");
  auto fit = [&](double distill, std::uint64_t seed) {
    auto model = imram::load_model(world.dir.file("plain"));
    imram::GlobalFitOptions options;
    options.epochs = 3;
    options.batch_size = 16;
    options.distill = distill;
    options.distill_candidates = 4;
    options.distill_queries = 8;
    options.seed = seed;
    options.show_progress = false;
    const auto summary = imram::fit_global_head(model, train, options);
    EXPECT_TRUE(std::isfinite(summary.last_epoch_loss));
    std::vector<torch::Tensor> weights;
    for (const auto& p : model.net->global_head->parameters()) weights.push_back(p.detach().clone().flatten());
    return torch::cat(weights);
  };
  const auto first = fit(1.0, 5);
  EXPECT_TRUE(torch::equal(first, fit(1.0, 5)));
  EXPECT_FALSE(torch::equal(first, fit(1.0, 6)));
  EXPECT_FALSE(torch::equal(first, fit(0.0, 5)));
}

TEST(FaissShortlist, DefaultFactoryGrowsWithTheGallery) {
  EXPECT_EQ(imram::default_faiss_factory(5000, 1024), "Flat");
  EXPECT_EQ(imram::default_faiss_factory(16384, 1024), "Flat");
  EXPECT_EQ(imram::default_faiss_factory(16385, 1024), "IVF512,SQfp16");
  EXPECT_EQ(imram::default_faiss_factory(100000, 1024), "IVF1024,SQfp16");
  EXPECT_EQ(imram::default_faiss_factory(30000, 1024), "IVF512,SQfp16");
  // Small global embeddings stay exact much longer: 100,000 images of 128 dimensions.
  EXPECT_EQ(imram::default_faiss_factory(100000, 128), "Flat");
  EXPECT_EQ(imram::default_faiss_factory(500000, 128), "IVF1024,SQfp16");
  EXPECT_THROW(imram::build_faiss_index("NoSuchIndex", torch::randn({10, 4})), imram::Error);
}

// An inverted file with float32 or float16 lists is scanned by us (BLAS or the float16 dot
// kernel per probed list, residuals from the list's centroid added back), not by FAISS's own loop:
// the hits must be FAISS's, rank by rank, for any nprobe and for more items than scanned.
class ScannedLists : public ::testing::TestWithParam<const char*> {};

TEST_P(ScannedLists, FindWhatFaissFinds) {
  torch::manual_seed(3);
  const auto vectors =
      torch::nn::functional::normalize(torch::randn({3000, 24}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  std::shared_ptr<faiss::Index> index;
  if (std::string(GetParam()) == "absolute") {
    // float16 lists of the vectors themselves rather than of their residuals (not the factory's).
    auto quantized = std::make_shared<faiss::IndexIVFScalarQuantizer>(
        new faiss::IndexFlatIP(24), 24, 16, faiss::ScalarQuantizer::QT_fp16, faiss::METRIC_INNER_PRODUCT, false);
    quantized->own_fields = true;
    quantized->train(3000, vectors.data_ptr<float>());
    quantized->add(3000, vectors.data_ptr<float>());
    index = quantized;
  } else {
    index = imram::build_faiss_index(GetParam(), vectors);
    if (auto* quantized = dynamic_cast<faiss::IndexIVFScalarQuantizer*>(index.get())) {
      EXPECT_TRUE(quantized->by_residual);
    }
  }
  const imram::FaissShortlist shortlist(index, imram::GallerySide::Images);
  for (const std::int64_t probes : {1, 3, 16})
    for (const std::int64_t k : {1, 10, 400, 3000}) {
      std::vector<imram::EncodedQuery> queries(2);
      for (std::size_t q = 0; q < queries.size(); ++q) {
        queries[q].caption.words = torch::zeros({1, 1, 4});  // a text query; only its global is read
        queries[q].global = vectors[std::int64_t(q) * 977].clone();
      }
      imram::SearchParams params;
      params.nprobe = probes;
      const auto ours = shortlist.search_many(queries, k, nullptr, params);
      faiss::SearchParametersIVF ivf;
      ivf.nprobe = std::size_t(probes);
      for (std::size_t q = 0; q < queries.size(); ++q) {
        std::vector<float> distances(static_cast<std::size_t>(k));
        std::vector<faiss::Index::idx_t> labels(static_cast<std::size_t>(k));
        index->search(1, queries[q].global.data_ptr<float>(), k, distances.data(), labels.data(), &ivf);
        const auto found = std::count_if(labels.begin(), labels.end(), [](auto label) { return label >= 0; });
        ASSERT_EQ(std::int64_t(ours[q].size()), found) << "nprobe " << probes << " k " << k;
        if (probes == 16) {
          ASSERT_EQ(found, std::min<std::int64_t>(k, 3000));
        }
        for (std::size_t r = 0; r < ours[q].size(); ++r) {
          EXPECT_NEAR(ours[q][r].score, distances[r], 1e-5) << "rank " << r;
          ASSERT_TRUE(ours[q][r].stage1.has_value());
          // Rounding may swap two items whose products are within it, nothing else.
          const bool tied = (r > 0 && std::abs(distances[r] - distances[r - 1]) < 1e-5) ||
                            (r + 1 < std::size_t(found) && std::abs(distances[r] - distances[r + 1]) < 1e-5);
          if (!tied) {
            EXPECT_EQ(ours[q][r].index, labels[r]) << "nprobe " << probes << " k " << k << " rank " << r;
          }
        }
      }
    }
}

INSTANTIATE_TEST_SUITE_P(FaissShortlist, ScannedLists, ::testing::Values("IVF16,Flat", "IVF16,SQfp16", "absolute"),
                         [](const auto& info) {
                           std::string name = info.param;
                           name.erase(std::remove_if(name.begin(), name.end(), [](char c) { return !std::isalnum(c); }),
                                      name.end());
                           return name;
                         });

// An HNSW shortlist searches with each call's ef_search, not a setting left on the shared index:
// its hits are FAISS's own for that efSearch, the index plain or behind a transform, and a small
// ef (which finds other neighbours here, checked first) does not stay for the next call.
TEST(FaissShortlist, HnswSearchesWithEachCallsEfSearch) {
  torch::manual_seed(5);
  const auto normalize = [](const torch::Tensor& t) {
    return torch::nn::functional::normalize(t, torch::nn::functional::NormalizeFuncOptions().dim(1));
  };
  const auto vectors = normalize(torch::randn({3000, 24}));
  const auto probes = normalize(torch::randn({20, 24}));
  for (const char* factory : {"HNSW8", "PCA16,HNSW8"}) {
    SCOPED_TRACE(factory);
    const std::shared_ptr<const faiss::Index> index = imram::build_faiss_index(factory, vectors);
    const imram::FaissShortlist shortlist(index, imram::GallerySide::Images);
    std::vector<imram::EncodedQuery> queries(std::size_t(probes.size(0)));
    for (std::size_t q = 0; q < queries.size(); ++q) {
      queries[q].caption.words = torch::zeros({1, 1, 4});  // a text query; only its global is read
      queries[q].global = probes[std::int64_t(q)].clone();
    }
    const std::int64_t k = 10;
    const auto faiss_labels = [&](int ef) {
      faiss::SearchParametersHNSW hnsw;
      hnsw.efSearch = ef;
      faiss::SearchParametersPreTransform transformed;
      transformed.index_params = &hnsw;
      const bool behind = dynamic_cast<const faiss::IndexPreTransform*>(index.get()) != nullptr;
      std::vector<float> distances(std::size_t(k) * queries.size());
      std::vector<faiss::Index::idx_t> labels(distances.size());
      index->search(probes.size(0), probes.contiguous().data_ptr<float>(), k, distances.data(), labels.data(),
                    behind ? static_cast<const faiss::SearchParameters*>(&transformed) : &hnsw);
      return labels;
    };
    const auto ours = [&](int ef) {
      imram::SearchParams params;
      params.ef_search = ef;
      std::vector<faiss::Index::idx_t> labels;
      for (const auto& hits : shortlist.search_many(queries, k, nullptr, params))
        for (const auto& hit : hits) labels.push_back(hit.index);
      return labels;
    };
    ASSERT_NE(faiss_labels(1), faiss_labels(512)) << "the test needs an ef that changes what is found";
    EXPECT_EQ(ours(512), faiss_labels(512));
    EXPECT_EQ(ours(1), faiss_labels(1));
    EXPECT_EQ(ours(512), faiss_labels(512));
  }
}

// Issue 21: what an attacker or an unlucky user did to an index.

using imram::test::write_text;
void expect_cli_error(const imram::test::CommandResult& result, const std::string& mention) {
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_EQ(result.output.rfind("imram: error: ", 0), 0u) << result.output;
  EXPECT_NE(result.output.find(mention), std::string::npos) << result.output;
}

// Item 2: two `index add` at once interleaved their bytes in the same files, for good.
TEST(IndexWriters, ASecondWriterIsRefusedNamingTheFirstAndChangesNothing) {
  World world;
  const auto dir = world.build("index");
  const auto manifest = read_text(dir + "/manifest.json");
  const auto add = "index add " + dir + " --data " + world.dir.file("data") + " --split dev --quiet";
  {
    // This process holds the lock as a first writer would.
    const int fd = ::open((dir + "/writer.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
    const auto pid = std::to_string(::getpid()) + "\n";
    ASSERT_EQ(::pwrite(fd, pid.data(), pid.size(), 0), ssize_t(pid.size()));
    const auto busy = "index " + dir + " is being written by pid " + std::to_string(::getpid());
    expect_cli_error(imram::test::imram_cli(add), busy);
    // A build that would replace it waits its turn too: the add's work would be thrown away.
    expect_cli_error(imram::test::imram_cli("index build --model " + world.dir.file("model") + " --data " +
                                            world.dir.file("data") + " --split dev --quiet --out " + dir),
                     busy);
    EXPECT_EQ(read_text(dir + "/manifest.json"), manifest);
    ::close(fd);
  }
  const auto added = imram::test::imram_cli(add);
  ASSERT_EQ(added.status, 0) << added.output;
  EXPECT_EQ(imram::GalleryIndex::open(dir)->num_images(), 18);
}

// Item 11: a split added twice held its items twice.
TEST(IndexWriters, AddingASplitTheIndexHoldsIsRefused) {
  World world;
  const auto dir = world.build("index");
  const auto manifest = read_text(dir + "/manifest.json");
  expect_cli_error(
      imram::test::imram_cli("index add " + dir + " --data " + world.dir.file("data") + " --split test --quiet"),
      "already holds the test split of " + fs::absolute(world.dir.file("data")).string());
  // Round 3, defect 2: another spelling of the same directory (a trailing slash, a link to it).
  fs::create_directory_symlink(world.dir.file("data"), world.dir.file("data_link"));
  for (const auto& spelling : {world.dir.file("data/"), world.dir.file("data_link")})
    expect_cli_error(imram::test::imram_cli("index add " + dir + " --data " + spelling + " --split test --quiet"),
                     "already holds the test split of");
  EXPECT_EQ(read_text(dir + "/manifest.json"), manifest);
}

// Item 7: counts the files do not hold were accepted, and searched with wrong or zero scores.
// A reader that read the manifest just before an `add` committed finds the FAISS files of that
// generation gone; it must read the new manifest and open the new generation, not fail.
TEST(IndexWriters, AReaderRacingACommitOpensTheNewGeneration) {
  World world;
  const auto dir = world.build("index", "float32", "dev");
  int commits = 0;
  const auto commit_an_add = [&] {
    if (commits++ > 0) return;
    auto writer = imram::IndexWriter::append(dir, false);
    writer.add_split(imram::PrecompSplit::open(world.dir.file("data"), "test"));
    writer.commit();
  };
  std::shared_ptr<imram::GalleryIndex> index;
  try {
    index = imram::GalleryIndex::open(dir, torch::kCPU, "", commit_an_add);
  } catch (const imram::Error& e) {
    ADD_FAILURE() << e.what();
  }
  ASSERT_EQ(commits, 2);                              // the second read of the manifest found the add's
  EXPECT_FALSE(fs::exists(dir + "/images.1.faiss"));  // what the first read named is gone
  ASSERT_TRUE(index);
  EXPECT_EQ(index->num_images(), 18);
  EXPECT_EQ(
      index->searcher(imram::GallerySide::Images, 5)->search(index->text_query("a red circle"), 3, nullptr).size(), 3u);
}

TEST(IndexManifest, CountsAreCheckedAgainstTheFilesOnOpening) {
  World world;
  const auto dir = world.build("index");  // 12 images of 6 regions, 60 captions
  const auto original = nlohmann::json::parse(read_text(dir + "/manifest.json"));
  const std::vector<std::pair<std::string, nlohmann::json>> edits = {
      {"regions", 18},  {"regions", 0}, {"captions_per_image", 7},           {"images", 12.5},   {"described", 10},
      {"captions", 59}, {"words", 1},   {"images", 18446744073709551615ull}, {"embed_size", 16}, {"generation", -1},
      {"described", 13}};
  for (const auto& [key, value] : edits) {
    auto edited = original;
    edited[key] = value;
    write_text(dir + "/manifest.json", edited.dump());
    try {
      imram::GalleryIndex::open(dir);
      ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
    } catch (const imram::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(dir + "/", 0), 0u) << key << ": " << e.what();
    }
  }
  write_text(dir + "/manifest.json", original.dump());
  EXPECT_NO_THROW(imram::GalleryIndex::open(dir));
}

// Item 7: a FAISS vector set to 1e30 verified, then headed every shortlist.
TEST(IndexManifest, VerifyCoversTheFaissFiles) {
  World world;
  const auto dir = world.build("index");
  ASSERT_EQ(imram::test::imram_cli("index verify " + dir).status, 0);
  auto bytes = read_text(dir + "/images.1.faiss");
  const float huge = 1e30f;
  std::memcpy(bytes.data() + bytes.size() - sizeof huge, &huge, sizeof huge);  // the last vector's last value
  write_text(dir + "/images.1.faiss", bytes);
  expect_cli_error(imram::test::imram_cli("index verify " + dir), dir + "/images.1.faiss: checksum mismatch");
}

// Item 11: FAISS's errors named its own source files.
TEST(IndexManifest, FaissErrorsNameOurFileNotFaissSources) {
  World world;
  const auto dir = world.build("index");
  write_text(dir + "/captions.1.faiss", "IxFI");
  const auto result = imram::test::imram_cli("--threads 1 search --index " + dir + " --image 0");
  expect_cli_error(result, dir + "/captions.1.faiss: not a readable FAISS index");
  EXPECT_EQ(result.output.find(".cpp"), std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
}

// Item 8: NaN in the store was ranked (printed as nan / JSON null) with exit 0.
TEST(IndexScores, ScoresThatAreNotFiniteAreAnErrorNamingTheItem) {
  World world;
  const auto dir = world.build("index");  // float32 store: 6 regions x 8 floats an image
  {
    std::fstream regions(dir + "/regions.bin", std::ios::binary | std::ios::in | std::ios::out);
    regions.seekp(3 * 6 * 8 * 4);
    const std::vector<float> nan(6 * 8, std::nanf(""));
    regions.write(reinterpret_cast<const char*>(nan.data()), std::streamsize(nan.size() * 4));
  }
  for (const char* shortlist : {"0", "12"})
    expect_cli_error(imram::test::imram_cli(std::string("--threads 1 search --json --index ") + dir +
                                            " --query 'a red circle' --top 12 --shortlist " + shortlist),
                     "image 3: its score is NaN");
  const auto index = imram::GalleryIndex::open(dir);
  EXPECT_THROW(index->searcher(imram::GallerySide::Captions, 0)->search(index->image_query(3), 5, nullptr),
               imram::Error);
}

}  // namespace
