// Image info (data/image_info.h): what an index and the server know of an image beyond its
// features, and how a dataset's split provides it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "imram/data/image_info.h"
#include "imram/data/scene.h"
#include "imram/error.h"
#include "test_util.h"

namespace {

imram::ImageInfo full_info() {
  imram::ImageInfo info;
  info.description = "a \"quoted\" harbour at dusk";
  info.twin = 2;
  info.picture = "photos/harbour.jpg";
  info.drawing = "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>";
  info.regions = {imram::Box{0.25, 0.5, 0.125, 0.0625}, std::nullopt};
  info.picture_stamp = imram::PictureStamp{123456, -1700000000123456789, 18446744073709551615ull};
  return info;
}

std::string error_of(const std::string& line, std::int64_t images = 3) {
  try {
    imram::parse_image_info(line, "images.jsonl:4", images);
  } catch (const imram::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ImageInfo, ReadsBackWhatItWrites) {
  const auto info = full_info();
  const auto line = imram::image_info_json(info);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const auto again = imram::parse_image_info(line, "images.jsonl:1", 3);
  EXPECT_EQ(again.description, info.description);
  EXPECT_EQ(again.twin, info.twin);
  EXPECT_EQ(again.picture, info.picture);
  EXPECT_EQ(again.drawing, info.drawing);
  EXPECT_EQ(again.regions, info.regions);
  EXPECT_EQ(again.picture_stamp, info.picture_stamp);
  EXPECT_TRUE(imram::parse_image_info("{}", "images.jsonl:1", 3).empty());  // every field is optional
}

TEST(ImageInfo, BadLinesAreRefusedNamingTheLine) {
  for (const auto& [line, what] : std::vector<std::pair<std::string, std::string>>{
           {"{not json", "not valid JSON"},
           {"[1, 2]", "JSON object"},
           {R"({"description": 7})", "\"description\" must be a string"},
           {R"({"twin": 3})", "one of the 3 images"},
           {R"({"twin": -1})", "one of the 3 images"},
           {R"({"regions": [[0, 0, 1]]})", "[x, y, width, height]"},
           {R"({"regions": [[0, 0, 1, "1"]]})", "[x, y, width, height]"},
           {R"({"regions": [[0, 0, 1e300, 1]]})", "far outside"},
           {R"({"regions": {"a": 1}})", "array"},
           {R"({"picture_stamp": {"bytes": 1, "modified_ns": 2}})", "\"picture_stamp\" must be"},
           {R"({"picture_stamp": {"bytes": -1, "modified_ns": 2, "inode": 3}})", "\"picture_stamp\" must be"},
           {R"({"picture_stamp": {"bytes": 1, "modified_ns": 9223372036854775808, "inode": 3}})", "whole number"},
           {R"({"picture_stamp": {"bytes": 1, "modified_ns": 2.5, "inode": 3}})", "whole number"},
           {R"({"picture_stamp": "1:2:3"})", "whole number"}}) {
    const auto error = error_of(line);
    EXPECT_EQ(error.rfind("images.jsonl:4: ", 0), 0u) << line << " -> " << error;
    EXPECT_NE(error.find(what), std::string::npos) << line << " -> " << error;
  }
}

TEST(ImageInfo, ASplitsOwnFileComesBeforeItsScenes) {
  imram::test::TempDir dir;
  EXPECT_TRUE(imram::dataset_image_info(dir.path(), "test", 2).empty());  // nothing describes it
  imram::Scene scene;
  scene.objects = {{0, 0, 0, 0, 0}, {1, 1, 2, 2, 2}};
  scene.region_objects = {1, -1, 0};
  std::ofstream(dir.file("test_scenes.jsonl")) << imram::scene_json(scene) << "\n" << imram::scene_json(scene) << "\n";
  const auto drawn = imram::dataset_image_info(dir.path(), "test", 2);
  ASSERT_EQ(drawn.size(), 2u);
  EXPECT_EQ(drawn[0].description, imram::describe(scene));
  EXPECT_NE(drawn[0].drawing.find("<svg"), std::string::npos);
  ASSERT_EQ(drawn[0].regions.size(), 3u);
  EXPECT_FALSE(drawn[0].regions[1]);  // the background covers no object
  // The bottom-right object's box lies in the picture's bottom-right third.
  ASSERT_TRUE(drawn[0].regions[0]);
  EXPECT_GT((*drawn[0].regions[0])[0], 2.0 / 3 - 0.05);
  EXPECT_LE((*drawn[0].regions[0])[0] + (*drawn[0].regions[0])[2], 1.0);
  std::ofstream(dir.file("test_images.jsonl")) << R"({"picture": "a.jpg", "twin": 1})"
                                               << "\n"
                                               << R"({"picture": "b.jpg", "twin": 0})"
                                               << "\n";
  const auto photos = imram::dataset_image_info(dir.path(), "test", 2);
  ASSERT_EQ(photos.size(), 2u);
  EXPECT_EQ(photos[1].picture, (std::filesystem::absolute(dir.path()) / "b.jpg").string());  // read against the dataset
  EXPECT_EQ(photos[1].twin, 0);
  try {
    imram::dataset_image_info(dir.path(), "test", 3);
    ADD_FAILURE() << "a file describing 2 of 3 images was accepted";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find("test_images.jsonl: describes 2 images, the split has 3"), std::string::npos)
        << e.what();
  }
}
