#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "imram/data/npy.h"
#include "imram/data/precomp_dataset.h"
#include "imram/data/synthetic.h"
#include "imram/data/vocabulary.h"
#include "imram/error.h"
#include "imram/metrics/twin_accuracy.h"
#include "test_util.h"

namespace fs = std::filesystem;
using imram::CaptionMeaning;
using imram::Relation;
using imram::Scene;
using imram::SceneObject;
using imram::SyntheticOptions;
using imram::TwinSwap;

namespace {

SyntheticOptions tiny(std::uint64_t seed = 1) {
  SyntheticOptions options;
  options.seed = seed;
  options.train = 20;
  options.dev = 20;
  options.test = 20;
  options.regions = 8;
  options.feature_dim = 32;
  return options;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> files_of(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// Lower-cased words with punctuation removed, independent of the library's own parser.
std::set<std::string> words_of(const std::string& caption) {
  std::set<std::string> words;
  std::istringstream in(caption);
  std::string word;
  while (in >> word) {
    std::string clean;
    for (const char c : word)
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '-')
        clean += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!clean.empty()) words.insert(clean);
  }
  return words;
}

int index_of(const std::vector<std::string>& names, const std::string& name) {
  return static_cast<int>(std::find(names.begin(), names.end(), name) - names.begin());
}

SceneObject object(const std::string& size, const std::string& colour, const std::string& shape, int row, int col) {
  SceneObject o;
  o.size = index_of(imram::synthetic_sizes(), size);
  o.colour = index_of(imram::synthetic_colours(), colour);
  o.shape = index_of(imram::synthetic_shapes(), shape);
  o.row = row;
  o.col = col;
  return o;
}

// small red circle (top left), large blue square (bottom right)
Scene two_object_scene() {
  Scene scene;
  scene.objects = {object("small", "red", "circle", 0, 0), object("large", "blue", "square", 2, 2)};
  return scene;
}

template <class T>
std::multiset<T> multiset_of(const Scene& scene, T (*field)(const SceneObject&)) {
  std::multiset<T> values;
  for (const auto& o : scene.objects) values.insert(field(o));
  return values;
}

}  // namespace

TEST(Synthetic, SameSeedGivesByteIdenticalFiles) {
  imram::test::TempDir a, b;
  imram::write_synthetic_dataset(a.path(), tiny());
  imram::write_synthetic_dataset(b.path(), tiny());
  const auto names = files_of(a.path());
  ASSERT_EQ(names, files_of(b.path()));
  EXPECT_EQ(names, (std::vector<std::string>{"dev_caps.txt", "dev_ims.npy", "dev_scenes.jsonl", "test_caps.txt",
                                             "test_ims.npy", "test_scenes.jsonl", "train_caps.txt", "train_ims.npy",
                                             "train_scenes.jsonl", "vocab.json"}));
  for (const auto& name : names) EXPECT_EQ(slurp(a.file(name)), slurp(b.file(name))) << name;
}

TEST(Synthetic, DifferentSeedGivesDifferentData) {
  imram::test::TempDir a, b;
  imram::write_synthetic_dataset(a.path(), tiny(1));
  imram::write_synthetic_dataset(b.path(), tiny(2));
  for (const char* name : {"train_caps.txt", "test_ims.npy", "test_scenes.jsonl"})
    EXPECT_NE(slurp(a.file(name)), slurp(b.file(name))) << name;
}

TEST(Synthetic, ThreadCountDoesNotChangeTheFiles) {
  imram::test::TempDir a, b;
  auto one = tiny(), three = tiny();
  one.threads = 1;
  three.threads = 3;
  imram::write_synthetic_dataset(a.path(), one);
  imram::write_synthetic_dataset(b.path(), three);
  EXPECT_EQ(slurp(a.file("train_ims.npy")), slurp(b.file("train_ims.npy")));
}

TEST(Synthetic, AnImageDoesNotDependOnTheSplitSize) {
  auto small = tiny(), large = tiny();
  large.test = 40;
  const imram::SyntheticWorld world_small(small), world_large(large);
  const auto a = world_small.generate_split("test", small.test);
  const auto b = world_large.generate_split("test", large.test);
  ASSERT_EQ(b.captions.size(), 200u);
  EXPECT_TRUE(std::equal(a.captions.begin(), a.captions.end(), b.captions.begin()));
  std::vector<float> fa(8 * 32), fb(8 * 32);
  world_small.render_features("test", 7, a.scenes[7], fa.data());
  world_large.render_features("test", 7, b.scenes[7], fb.data());
  EXPECT_EQ(fa, fb);
}

TEST(Synthetic, DatasetLoadsThroughTheStandardLoaders) {
  imram::test::TempDir dir;
  std::vector<std::string> report;
  imram::write_synthetic_dataset(dir.path(), tiny(), [&](const std::string& line) { report.push_back(line); });
  ASSERT_EQ(report.size(), 3u);
  EXPECT_EQ(report[0].rfind("train: 20 images", 0), 0u) << report[0];
  const auto vocab = imram::Vocabulary::from_file(dir.file("vocab.json"));
  EXPECT_GT(vocab.size(), 20);
  for (const char* split : {"train", "dev", "test"}) {
    const auto data = imram::PrecompSplit::open(dir.path(), split);
    EXPECT_EQ(data.num_images(), 20);
    EXPECT_EQ(data.num_regions(), 8);
    EXPECT_EQ(data.feature_dim(), 32);
    EXPECT_EQ(data.captions_per_image(), 5);
    const float* values = data.features().as<float>();
    const auto n = data.features().numel();
    std::int64_t positive = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(std::isfinite(values[i])) << split << " element " << i;
      ASSERT_GE(values[i], 0.0f) << split << " element " << i;
      positive += values[i] > 0;
    }
    EXPECT_GT(positive, n / 5) << split;
    EXPECT_LT(positive, n) << split << ": ReLU features should have zeros";
    EXPECT_EQ(imram::read_scenes(dir.path(), split).size(), 20u);
  }
  // The train words are in the vocabulary: few unknowns in a train caption.
  const auto train = imram::PrecompSplit::open(dir.path(), "train");
  std::int64_t unknown = 0, total = 0;
  for (const auto& caption : train.captions())
    for (const auto id : vocab.encode(caption)) {
      unknown += id == imram::Vocabulary::kUnknown;
      ++total;
    }
  EXPECT_LT(unknown * 5, total);
}

TEST(Synthetic, TwinsShareShapesColoursAndSizesButNotBindings) {
  const imram::SyntheticWorld world(SyntheticOptions{});
  const auto split = world.generate_split("test", 400);
  int colour_swaps = 0, position_swaps = 0;
  for (std::int64_t i = 0; i < 400; ++i) {
    const Scene& scene = split.scenes[std::size_t(i)];
    ASSERT_EQ(scene.twin, i ^ 1);
    const Scene& twin = split.scenes[std::size_t(scene.twin)];
    EXPECT_EQ(twin.twin, i);
    EXPECT_EQ(twin.swap, scene.swap);
    using F = int (*)(const SceneObject&);
    const F shape = [](const SceneObject& o) { return o.shape; };
    const F colour = [](const SceneObject& o) { return o.colour; };
    const F size = [](const SceneObject& o) { return o.size; };
    const F cell = [](const SceneObject& o) { return o.row * 3 + o.col; };
    const F conjunction = [](const SceneObject& o) { return o.shape * 100 + o.colour; };
    const F placed = [](const SceneObject& o) { return (o.shape * 100 + o.colour) * 10 + o.row * 3 + o.col; };
    EXPECT_EQ(multiset_of(scene, shape), multiset_of(twin, shape));
    EXPECT_EQ(multiset_of(scene, colour), multiset_of(twin, colour));
    EXPECT_EQ(multiset_of(scene, size), multiset_of(twin, size));
    EXPECT_EQ(multiset_of(scene, cell), multiset_of(twin, cell));
    EXPECT_NE(multiset_of(scene, placed), multiset_of(twin, placed));
    if (scene.swap == TwinSwap::Colours) {
      ++colour_swaps;
      EXPECT_NE(multiset_of(scene, conjunction), multiset_of(twin, conjunction)) << i;
    } else {
      ++position_swaps;
    }
    EXPECT_GE(scene.objects.size(), std::size_t(imram::kSyntheticMinObjects));
    EXPECT_LE(scene.objects.size(), std::size_t(imram::kSyntheticMaxObjects));
    const auto cells = multiset_of(scene, cell);
    EXPECT_EQ(std::set<int>(cells.begin(), cells.end()).size(), cells.size()) << "shared cell";
  }
  EXPECT_GT(colour_swaps, 200);
  EXPECT_GT(position_swaps, 40);
}

TEST(Synthetic, EveryCaptionFitsItsImageAndNotItsTwin) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    SyntheticOptions options;
    options.seed = seed;
    const imram::SyntheticWorld world(options);
    const auto split = world.generate_split("dev", 300);
    ASSERT_EQ(split.captions.size(), 1500u);
    for (std::size_t j = 0; j < split.captions.size(); ++j) {
      const auto& caption = split.captions[j];
      const Scene& own = split.scenes[j / 5];
      EXPECT_TRUE(imram::caption_consistent(caption, own)) << caption << " | " << imram::describe(own);
      EXPECT_FALSE(imram::caption_consistent(caption, split.scenes[std::size_t(own.twin)]))
          << caption << " | twin " << imram::describe(split.scenes[std::size_t(own.twin)]);
      EXPECT_FALSE(imram::parse_caption(caption).mentions.empty()) << caption;
    }
    for (std::size_t i = 0; i < 300; ++i) {
      const std::set<std::string> distinct(split.captions.begin() + long(5 * i),
                                           split.captions.begin() + long(5 * i + 5));
      EXPECT_EQ(distinct.size(), 5u) << "image " << i;
    }
  }
}

TEST(Synthetic, CaptionsReadFromDiskFitTheScenesFile) {
  imram::test::TempDir dir;
  imram::write_synthetic_dataset(dir.path(), tiny(5));
  const auto data = imram::PrecompSplit::open(dir.path(), "test");
  const auto scenes = imram::read_scenes(dir.path(), "test");
  for (std::int64_t j = 0; j < data.num_captions(); ++j) {
    const auto& caption = data.captions()[std::size_t(j)];
    const Scene& own = scenes[std::size_t(data.image_of_caption(j))];
    EXPECT_TRUE(imram::caption_consistent(caption, own)) << caption;
    EXPECT_FALSE(imram::caption_consistent(caption, scenes[std::size_t(own.twin)])) << caption;
  }
}

TEST(Synthetic, CaptionsOnlyNameShapesAndColoursTheSceneHas) {
  const imram::SyntheticWorld world(SyntheticOptions{});
  const auto split = world.generate_split("train", 200);
  const auto& shapes = imram::synthetic_shapes();
  const auto& colours = imram::synthetic_colours();
  for (std::size_t j = 0; j < split.captions.size(); ++j) {
    const Scene& scene = split.scenes[j / 5];
    const auto words = words_of(split.captions[j]);
    for (std::size_t s = 0; s < shapes.size(); ++s) {
      const bool present = std::any_of(scene.objects.begin(), scene.objects.end(),
                                       [&](const SceneObject& o) { return o.shape == int(s); });
      if (!present) {
        EXPECT_EQ(words.count(shapes[s]), 0u) << split.captions[j];
      }
    }
    for (std::size_t c = 0; c < colours.size(); ++c) {
      const bool present = std::any_of(scene.objects.begin(), scene.objects.end(),
                                       [&](const SceneObject& o) { return o.colour == int(c); });
      if (!present) {
        EXPECT_EQ(words.count(colours[c]), 0u) << split.captions[j];
      }
    }
  }
}

TEST(Synthetic, CaptionsAreMostlySpecificToTheirImage) {
  const imram::SyntheticWorld world(SyntheticOptions{});
  const auto split = world.generate_split("test", 400);
  double ideal = 0;
  for (std::size_t j = 0; j < split.captions.size(); j += 3) {
    const auto meaning = imram::parse_caption(split.captions[j]);
    int fitting = 0;
    for (const auto& scene : split.scenes) fitting += imram::caption_consistent(meaning, scene);
    ASSERT_GE(fitting, 1);
    ideal += 1.0 / fitting;
  }
  EXPECT_GT(ideal / double((split.captions.size() + 2) / 3), 0.9);
}

TEST(SyntheticCaptions, ParserReadsAttributesPositionsAndRelations) {
  const int red = index_of(imram::synthetic_colours(), "red");
  const int green = index_of(imram::synthetic_colours(), "green");
  const int circle = index_of(imram::synthetic_shapes(), "circle");
  const int square = index_of(imram::synthetic_shapes(), "square");

  auto m = imram::parse_caption("A tiny red ring to the left of a blue square.");
  ASSERT_EQ(m.mentions.size(), 2u);
  EXPECT_EQ(m.mentions[0].shape, circle);
  EXPECT_EQ(m.mentions[0].colour, red);
  EXPECT_EQ(m.mentions[0].size, 0);
  EXPECT_EQ(m.mentions[0].row, -1);
  ASSERT_EQ(m.relations.size(), 1u);
  EXPECT_EQ(m.relations[0].subject, 0);
  EXPECT_EQ(m.relations[0].reference, 1);
  EXPECT_EQ(m.relations[0].relation, Relation::LeftOf);

  m = imram::parse_caption("to the left of a blue square there is a red circle");
  ASSERT_EQ(m.relations.size(), 1u);
  EXPECT_EQ(m.mentions[std::size_t(m.relations[0].subject)].shape, circle);
  EXPECT_EQ(m.mentions[std::size_t(m.relations[0].reference)].shape, square);

  m = imram::parse_caption("a box painted green in the top right corner");
  ASSERT_EQ(m.mentions.size(), 1u);
  EXPECT_EQ(m.mentions[0].shape, square);
  EXPECT_EQ(m.mentions[0].colour, green);
  EXPECT_EQ(m.mentions[0].row, 0);
  EXPECT_EQ(m.mentions[0].col, 2);

  m = imram::parse_caption("a red circle above a blue square, which is left of a green star");
  ASSERT_EQ(m.relations.size(), 2u);
  EXPECT_EQ(m.relations[0].relation, Relation::Above);
  EXPECT_EQ(m.relations[1].subject, 1);
  EXPECT_EQ(m.relations[1].reference, 2);
  EXPECT_EQ(m.relations[1].relation, Relation::LeftOf);

  m = imram::parse_caption("a red circle above a blue square and a green star");
  EXPECT_EQ(m.mentions.size(), 3u);
  EXPECT_EQ(m.relations.size(), 1u);

  m = imram::parse_caption("in the centre there is a huge ring");
  ASSERT_EQ(m.mentions.size(), 1u);
  EXPECT_EQ(m.mentions[0].size, 2);
  EXPECT_EQ(m.mentions[0].row, 1);
  EXPECT_EQ(m.mentions[0].col, 1);

  m = imram::parse_caption("something red");
  ASSERT_EQ(m.mentions.size(), 1u);
  EXPECT_EQ(m.mentions[0].shape, -1);
  EXPECT_EQ(m.mentions[0].colour, red);

  EXPECT_TRUE(imram::parse_caption("a pictrue of nothing at all").mentions.empty());
}

TEST(SyntheticCaptions, ConsistencyChecksBindingsPositionsAndRelations) {
  const Scene scene = two_object_scene();
  for (const char* fits :
       {"a red circle", "a small red circle left of a blue square", "a blue box in the bottom right corner",
        "a circle above a square", "to the right of a red disc there is a big square", "a circle and a square",
        "a pictrue of shapes"})
    EXPECT_TRUE(imram::caption_consistent(fits, scene)) << fits;
  for (const char* wrong : {"a blue circle", "a red square and a blue circle", "a red circle right of a blue square",
                            "a large red circle", "a red circle at the bottom", "a red circle and a red circle",
                            "a circle, a square and a star", "something green"})
    EXPECT_FALSE(imram::caption_consistent(wrong, scene)) << wrong;
}

TEST(SyntheticScenes, DescribeListsObjectsInReadingOrder) {
  Scene scene = two_object_scene();
  std::swap(scene.objects[0], scene.objects[1]);
  EXPECT_EQ(imram::describe(scene), "small red circle (top left), large blue square (bottom right)");
  scene.objects[0].row = 1;
  scene.objects[0].col = 1;
  EXPECT_EQ(imram::describe(scene), "small red circle (top left), large blue square (center)");
}

TEST(SyntheticScenes, ScenesFileRoundTrips) {
  imram::test::TempDir dir;
  Scene a = two_object_scene(), b = two_object_scene();
  std::swap(b.objects[0].colour, b.objects[1].colour);
  a.twin = 1;
  b.twin = 0;
  std::ofstream(dir.file("dev_scenes.jsonl")) << imram::scene_json(a) << "\n" << imram::scene_json(b) << "\n";
  const auto scenes = imram::read_scenes(dir.path(), "dev");
  ASSERT_EQ(scenes.size(), 2u);
  EXPECT_EQ(scenes[0].objects, a.objects);
  EXPECT_EQ(scenes[1].objects, b.objects);
  EXPECT_EQ(scenes[1].twin, 0);
  EXPECT_EQ(imram::read_twins(dir.path(), "dev", 2), (std::vector<std::int64_t>{1, 0}));
}

TEST(SyntheticScenes, ScenesFileRecordsTheObjectOfEveryRegion) {
  imram::test::TempDir dir;
  const auto options = tiny();
  imram::write_synthetic_dataset(dir.path(), options);
  const auto scenes = imram::read_scenes(dir.path(), "test");
  // Checked against the features file written beside it, not against the generator: two regions
  // the scenes file gives one object look alike more than two regions of different objects.
  const auto features = imram::NpyArray::open(dir.file("test_ims.npy"));
  const auto* rows = features.as<float>();
  const auto dim = std::size_t(options.feature_dim);
  const auto cosine = [&](std::size_t image, std::size_t a, std::size_t b) {
    const float* x = rows + (image * std::size_t(options.regions) + a) * dim;
    const float* y = rows + (image * std::size_t(options.regions) + b) * dim;
    double xy = 0, xx = 0, yy = 0;
    for (std::size_t k = 0; k < dim; ++k)
      xy += double(x[k]) * y[k], xx += double(x[k]) * x[k], yy += double(y[k]) * y[k];
    return xy / std::sqrt(xx * yy);
  };
  double same = 0, different = 0;
  std::int64_t same_pairs = 0, different_pairs = 0;
  for (std::size_t i = 0; i < scenes.size(); ++i) {
    const auto& regions = scenes[i].region_objects;
    ASSERT_EQ(regions.size(), std::size_t(options.regions));
    for (std::size_t a = 0; a < regions.size(); ++a)
      for (std::size_t b = a + 1; b < regions.size(); ++b) {
        if (regions[a] < 0 || regions[b] < 0) continue;
        (regions[a] == regions[b] ? same : different) += cosine(i, a, b);
        ++(regions[a] == regions[b] ? same_pairs : different_pairs);
      }
    // Every object has a region; one region at least is left for the background.
    for (int o = 0; o < int(scenes[i].objects.size()); ++o)
      EXPECT_GE(std::count(regions.begin(), regions.end(), o), 1) << "image " << i << " object " << o;
    EXPECT_GE(std::count(regions.begin(), regions.end(), -1), 1) << "image " << i;
  }
  ASSERT_GT(same_pairs, 0);
  ASSERT_GT(different_pairs, 0);
  EXPECT_GT(same / double(same_pairs), different / double(different_pairs) + 0.1)
      << "one object's regions " << same / double(same_pairs) << ", different objects' "
      << different / double(different_pairs);
}

TEST(SyntheticScenes, BadScenesFileNamesTheFileAndLine) {
  imram::test::TempDir dir;
  const std::string good = imram::scene_json(two_object_scene());
  const auto expect_error = [&](const std::string& second_line, const std::string& what) {
    std::ofstream(dir.file("test_scenes.jsonl")) << good << "\n" << second_line << "\n";
    try {
      imram::read_scenes(dir.path(), "test");
      ADD_FAILURE() << "no error for " << second_line;
    } catch (const imram::Error& e) {
      EXPECT_NE(std::string(e.what()).find("test_scenes.jsonl:2:"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"objects":[{"shape":"circle","colour":"red","size":"small","position":"top"}],"regions":[0,1]})",
               "\"regions\" entries must be -1 or an index");
  expect_error(R"({"objects":[{"shape":"circle","colour":"mauve","size":"small","position":"top"}]})", "mauve");
  expect_error(R"({"objects":[{"shape":"circle","colour":"red","size":"small"}]})", "position");
  expect_error(
      R"({"objects":[{"shape":"circle","colour":"red","size":"small","position":"top"}],"regions":[4294967296]})",
      "\"regions\" entries must be -1 or an index");
  expect_error(R"({"objects":[{"shape":"circle","colour":"red","size":"small","position":"top"}],"twin":0,"swap":[]})",
               "\"swap\" must be a string");
  expect_error(R"({"objects":[]})", "objects");
  expect_error("{not json", "JSON");
  expect_error(R"({"objects":[{"shape":"circle","colour":"red","size":"small","position":"top"}],"twin":9})", "twin");
  EXPECT_THROW(imram::read_scenes(dir.path(), "train"), imram::Error);
}

TEST(SyntheticScenes, ASplitWithoutTwinsHasNoTwinAccuracy) {
  imram::test::TempDir dir;
  EXPECT_TRUE(imram::read_twins(dir.path(), "test", 1).empty());  // no image info at all
  std::ofstream(dir.file("test_scenes.jsonl")) << imram::scene_json(two_object_scene()) << "\n";
  EXPECT_TRUE(imram::read_twins(dir.path(), "test", 1).empty());
  EXPECT_THROW(imram::read_twins(dir.path(), "test", 2), imram::Error);  // a scene short
}

TEST(SyntheticOptionsCheck, RejectsOddSplitsAndTooFewRegions) {
  auto odd = tiny();
  odd.test = 21;
  EXPECT_THROW(imram::SyntheticWorld{odd}, imram::Error);
  auto few = tiny();
  few.regions = imram::kSyntheticMaxObjects - 1;
  EXPECT_THROW(imram::SyntheticWorld{few}, imram::Error);
  auto shapes = tiny();
  shapes.shapes = 99;
  EXPECT_THROW(imram::SyntheticWorld{shapes}, imram::Error);
  imram::test::TempDir dir;
  EXPECT_THROW(imram::write_synthetic_dataset(dir.path(), odd), imram::Error);
  EXPECT_TRUE(files_of(dir.path()).empty());
}

TEST(TwinAccuracy, CountsStrictWinsOverTheTwin) {
  // 4 images, 1 caption each; sims[image * 4 + caption].
  const std::vector<double> sims = {
      0.9, 0.1, 0.5, 0.0,  // image 0
      0.8, 0.7, 0.5, 0.0,  // image 1
      0.0, 0.0, 0.5, 0.2,  // image 2
      0.0, 0.0, 0.1, 0.2,  // image 3
  };
  const std::vector<std::int64_t> twins = {1, 0, 3, 2};
  // caption 0: 0.9 > 0.8 win; caption 1: 0.7 > 0.1 win; caption 2: 0.5 > 0.1 win;
  // caption 3: 0.2 vs 0.2 tie, a loss.
  EXPECT_DOUBLE_EQ(imram::twin_accuracy(sims.data(), 4, 4, twins, 1), 0.75);
  // Images without a twin are left out.
  EXPECT_DOUBLE_EQ(imram::twin_accuracy(sims.data(), 4, 4, {1, 0, -1, -1}, 1), 1.0);
  EXPECT_THROW(imram::twin_accuracy(sims.data(), 4, 4, {-1, -1, -1, -1}, 1), imram::Error);
  EXPECT_THROW(imram::twin_accuracy(sims.data(), 4, 4, {1, 0, 3}, 1), imram::Error);
  EXPECT_THROW(imram::twin_accuracy(sims.data(), 4, 4, {1, 0, 3, 3}, 1), imram::Error);
  EXPECT_THROW(imram::twin_accuracy(sims.data(), 4, 4, twins, 5), imram::Error);
}

TEST(TwinAccuracy, UsesFiveCaptionsPerImageByDefault) {
  // 2 images x 10 captions: image 0 wins on its 5 captions, image 1 on 2 of its 5.
  std::vector<double> sims(20, 0.0);
  for (int j = 0; j < 5; ++j) sims[std::size_t(j)] = 1.0;
  sims[10 + 5] = sims[10 + 6] = 1.0;
  EXPECT_DOUBLE_EQ(imram::twin_accuracy(sims.data(), 2, 10, {1, 0}), 0.7);
}

TEST(NpyWriter, StreamsChunksAndAppearsOnlyWhenComplete) {
  imram::test::TempDir dir;
  const std::string path = dir.file("x.npy");
  {
    imram::NpyWriter writer(path, imram::DType::Float32, {2, 3});
    const std::vector<float> first = {1, 2, 3, 4}, second = {5, 6};
    writer.write(first.data(), first.size());
    EXPECT_FALSE(fs::exists(path));
    writer.write(second.data(), second.size());
    EXPECT_THROW(writer.write(second.data(), 1), imram::Error);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(files_of(dir.path()).empty()) << "a failed writer leaves its temporary file";
  {
    imram::NpyWriter writer(path, imram::DType::Float32, {2, 3});
    const std::vector<float> values = {1, 2, 3, 4, 5, 6};
    writer.write(values.data(), 6);
    writer.finish();
  }
  const auto array = imram::NpyArray::open(path);
  EXPECT_EQ(array.shape(), (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(array.as<float>()[5], 6.0f);
  std::vector<float> same(6);
  imram::write_npy(dir.file("y.npy"), {2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  EXPECT_EQ(slurp(path), slurp(dir.file("y.npy")));
  imram::NpyWriter short_writer(dir.file("z.npy"), imram::DType::Float32, {4});
  short_writer.write(same.data(), 2);
  EXPECT_THROW(short_writer.finish(), imram::Error);
  EXPECT_FALSE(fs::exists(dir.file("z.npy")));
  imram::NpyWriter typed(dir.file("w.npy"), imram::DType::Int64, {1});
  EXPECT_THROW(typed.write(same.data(), 1), imram::Error);
}
