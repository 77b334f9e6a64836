#include <gtest/gtest.h>

#include <fstream>

#include "imram/data/precomp_dataset.h"
#include "imram/error.h"
#include "test_util.h"

namespace {

void write_split(const imram::test::TempDir& dir, const std::string& name, std::int64_t images, int captions,
                 const std::string& features_suffix = "_ims.npy") {
  std::vector<float> features(std::size_t(images * 2 * 3));
  for (std::size_t i = 0; i < features.size(); ++i) features[i] = float(i);
  imram::write_npy(dir.file(name + features_suffix), {images, 2, 3}, features);
  std::ofstream caps(dir.file(name + "_caps.txt"));
  for (int c = 0; c < captions; ++c) caps << "caption number " << c << "\n";
}

using imram::test::error_of;

TEST(PrecompSplit, MapsFiveCaptionsPerImageInImageOrder) {
  imram::test::TempDir dir;
  write_split(dir, "test", 3, 15);
  const auto split = imram::PrecompSplit::open(dir.path(), "test");
  EXPECT_EQ(split.num_images(), 3);
  EXPECT_EQ(split.num_captions(), 15);
  EXPECT_EQ(split.captions_per_image(), 5);
  EXPECT_EQ(split.image_of_caption(4), 0);
  EXPECT_EQ(split.image_of_caption(5), 1);
  EXPECT_EQ(split.image_of_caption(14), 2);
  EXPECT_EQ(split.image_features(2)[0], 12.f);
  EXPECT_EQ(split.captions()[7], "caption number 7");
}

TEST(PrecompSplit, MapsOneToOneAndFindsTheImramFeatureName) {
  imram::test::TempDir dir;
  write_split(dir, "train", 4, 4, "_feat.npy");
  const auto split = imram::PrecompSplit::open(dir.path(), "train");
  EXPECT_EQ(split.captions_per_image(), 1);
  EXPECT_EQ(split.image_of_caption(3), 3);
}

TEST(PrecompSplit, RejectsCountMismatchesEmptyLinesAndMissingFiles) {
  imram::test::TempDir dir;
  write_split(dir, "bad", 3, 11);
  EXPECT_NE(error_of([&] { imram::PrecompSplit::open(dir.path(), "bad"); }).find("11 captions for 3 images"),
            std::string::npos);
  write_split(dir, "gap", 1, 0);
  std::ofstream(dir.file("gap_caps.txt")) << "one\ntwo\n\nfour\nfive\n";
  EXPECT_NE(error_of([&] { imram::PrecompSplit::open(dir.path(), "gap"); }).find("gap_caps.txt:3: empty caption"),
            std::string::npos);
  EXPECT_NE(error_of([&] { imram::PrecompSplit::open(dir.path(), "nothing"); }).find("nothing_ims.npy"),
            std::string::npos);
  imram::write_npy(dir.file("flat_ims.npy"), {3, 4}, std::vector<float>(12));
  EXPECT_NE(error_of([&] { imram::PrecompSplit::open(dir.path(), "flat"); }).find("3-dimensional"), std::string::npos);
  imram::write_npy(dir.file("wide_ims.npy"), {1, 1, 1}, std::vector<double>{1});
  EXPECT_NE(error_of([&] { imram::PrecompSplit::open(dir.path(), "wide"); }).find("float32"), std::string::npos);
  const auto split = [&] {
    write_split(dir, "ok", 1, 5);
    return imram::PrecompSplit::open(dir.path(), "ok");
  }();
  EXPECT_THROW(split.image_features(1), imram::Error);
}

}  // namespace
