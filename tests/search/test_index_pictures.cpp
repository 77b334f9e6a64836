// Pictures in the index (issue 20): a thumbnail of each image's picture stored in the index and
// served before the picture file, checked by `index verify`; a picture that cannot be read costs
// only its thumbnail; `index add --images` takes a folder of pictures straight into an index.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>
#include <thread>

#include "cli/cli_runner.h"
#include "imram/data/image_info.h"
#include "imram/data/scene.h"
#include "imram/error.h"
#include "imram/image/picture.h"
#include "imram/image/render.h"
#include "imram/search/index_dir.h"
#include "imram/serve/backend.h"
#include "imram/serve/server.h"
#include "random_model.h"
#include "serve/http_client.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using imram::test::read_text;
void save_small_model(const std::string& dir, const std::string& vocab, std::int64_t img_dim) {
  imram::ModelConfig config;
  config.embed_size = 8;
  config.word_dim = 4;
  config.img_dim = img_dim;
  config.iteration_steps = 2;
  config.global_head = 6;
  const auto model = imram::test::random_model(vocab, config, 11);
  imram::save_model(dir, model);
}

// Image i's picture: its left half in colour(i), its right half white; 2:1, and image 0 smaller
// than a thumbnail.
cv::Scalar colour(int i) { return cv::Scalar(40 + 15 * i, 200 - 10 * i, 90); }  // RGB
cv::Size picture_size(int i) { return i == 0 ? cv::Size(200, 100) : cv::Size(640, 320); }

// A synthetic world whose 12 test images have pictures (photos/<i>.png, listed in
// test_images.jsonl with the scenes' boxes), and a model of its features.
struct PictureWorld {
  imram::test::TempDir dir;
  PictureWorld() {
    imram::test::write_small_world(dir.file("data"), 20, 6, 12, 6, 16);
    save_small_model(dir.file("model"), dir.file("data/vocab.json"), 16);
    fs::create_directories(dir.file("photos"));
    const auto scenes = imram::read_scenes(dir.file("data"), "test");
    std::ofstream lines(dir.file("data/test_images.jsonl"));
    for (int i = 0; i < 12; ++i) {
      const auto size = picture_size(i);
      cv::Mat picture(size, CV_8UC3, cv::Scalar(255, 255, 255));
      picture(cv::Rect(0, 0, size.width / 2, size.height)).setTo(colour(i));
      imram::write_picture(photo(i), picture);
      auto info = imram::image_info(scenes[std::size_t(i)]);
      info.picture = photo(i);
      lines << imram::image_info_json(info) << "\n";
    }
  }
  std::string photo(int i) const { return dir.file("photos/" + std::to_string(i) + ".png"); }
  std::string build(const std::string& name, std::vector<std::string>* warnings = nullptr) {
    imram::IndexOptions options;
    options.show_progress = false;
    auto writer = imram::IndexWriter::create(dir.file(name), dir.file("model"), options);
    writer.on_warning([warnings](const std::string& line) {
      if (warnings)
        warnings->push_back(line);
      else
        ADD_FAILURE() << "warning: " << line;
    });
    writer.add_split(imram::PrecompSplit::open(dir.file("data"), "test"));
    writer.commit();
    return dir.file(name);
  }
};

cv::Mat decode(const std::string& jpeg) {
  return cv::imdecode(std::vector<unsigned char>(jpeg.begin(), jpeg.end()), cv::IMREAD_COLOR);  // BGR
}

// The colour (RGB) at a fraction of the picture's width and height is `expected`, within JPEG's error.
void expect_colour_at(const cv::Mat& bgr, double fx, double fy, const cv::Scalar& expected, const std::string& what) {
  const auto pixel = bgr.at<cv::Vec3b>(int(fy * bgr.rows), int(fx * bgr.cols));
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(pixel[2 - c], expected[c], 10) << what << ", channel " << c;
}

// Whether `output` has a line "imram: warning: ..." naming `path`.
bool warns_about(const std::string& output, const std::string& path) {
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("imram: warning: ", 0) == 0 && line.find(path) != std::string::npos) return true;
  return false;
}

std::vector<std::int64_t> images_found(const imram::GalleryIndex& index, std::int64_t shortlist) {
  std::vector<std::int64_t> found;
  for (const auto& hit : index.searcher(imram::GallerySide::Images, shortlist)
                             ->search(index.text_query("a red circle"), index.num_images(), nullptr))
    found.push_back(hit.index);
  std::sort(found.begin(), found.end());
  return found;
}

TEST(IndexPictures, ThumbnailsAreStoredSmallAndServedBeforeThePictureFile) {
  PictureWorld world;
  const auto index = imram::GalleryIndex::open(world.build("index"));
  ASSERT_TRUE(index->described());
  for (int i = 0; i < 12; ++i) {
    const auto thumbnail = decode(index->thumbnail(i));
    ASSERT_FALSE(thumbnail.empty()) << "image " << i;
    // The longer side at most kThumbnailSide, the shape kept, a small picture never enlarged.
    const auto expected = i == 0 ? cv::Size(200, 100) : cv::Size(imram::kThumbnailSide, imram::kThumbnailSide / 2);
    EXPECT_EQ(thumbnail.size(), expected) << "image " << i;
    expect_colour_at(thumbnail, 0.25, 0.5, colour(i), "left half of image " + std::to_string(i));
    expect_colour_at(thumbnail, 0.75, 0.5, cv::Scalar(255, 255, 255), "right half of image " + std::to_string(i));
  }
  // The index is self-contained: its pictures are served with the photos gone.
  fs::remove_all(world.dir.file("photos"));
  const auto backend = imram::open_index_backend(index->dir(), "cpu", {0});
  imram::ServerOptions options;
  options.port = 0;
  imram::Server server(*backend, options);
  const int port = server.bind();
  std::thread serving([&] { server.serve(); });
  const auto picture = imram::test::http(port, "GET", "/api/images/7");
  const auto explained = imram::test::http(port, "GET", "/api/explain?image=7&caption=35");
  server.stop();
  serving.join();
  ASSERT_EQ(picture.status, 200) << picture.body;
  EXPECT_NE(picture.headers.find("Content-Type: image/jpeg"), std::string::npos) << picture.headers;
  EXPECT_EQ(picture.body, index->thumbnail(7));
  const auto served = decode(picture.body);
  ASSERT_FALSE(served.empty());
  EXPECT_LE(std::max(served.cols, served.rows), imram::kThumbnailSide);
  expect_colour_at(served, 0.25, 0.5, colour(7), "served picture of image 7");
  // The explain view's boxes are the image's region boxes, for the page to shade on the photo.
  ASSERT_EQ(explained.status, 200) << explained.body;
  const auto boxes = nlohmann::json::parse(explained.body)["boxes"];
  ASSERT_EQ(boxes.size(), index->image_info(7).regions.size());
}

TEST(IndexPictures, APictureThatCannotBeReadIsAWarningAndItsImageStaysSearchable) {
  PictureWorld world;
  fs::remove(world.photo(3));
  std::vector<std::string> warnings;
  const auto index = imram::GalleryIndex::open(world.build("index", &warnings));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find(world.photo(3)), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("image 3 is indexed without a thumbnail"), std::string::npos) << warnings[0];
  EXPECT_TRUE(index->thumbnail(3).empty());
  EXPECT_FALSE(index->thumbnail(2).empty());
  EXPECT_FALSE(index->thumbnail(4).empty());
  EXPECT_EQ(index->image_info(3).picture, world.photo(3));
  std::vector<std::int64_t> all(12);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(images_found(*index, 0), all);
  EXPECT_EQ(images_found(*index, 12), all);
  index->verify();
  // The command line says it as a warning and succeeds.
  const auto built =
      imram::test::imram_cli("--threads 1 index build --quiet --model " + world.dir.file("model") + " --data " +
                             world.dir.file("data") + " --split test --out " + world.dir.file("cli-index"));
  EXPECT_EQ(built.status, 0) << built.output;
  EXPECT_TRUE(warns_about(built.output, world.photo(3))) << built.output;
}

TEST(IndexPictures, VerifyCatchesADamagedThumbnailByte) {
  PictureWorld world;
  const auto dir = world.build("index");
  const auto verified = imram::test::imram_cli("index verify " + dir);
  ASSERT_EQ(verified.status, 0) << verified.output;
  auto bytes = read_text(dir + "/thumbnails.bin");
  ASSERT_GT(bytes.size(), 1000u);
  bytes[bytes.size() / 2] = char(bytes[bytes.size() / 2] ^ 0x01);
  std::ofstream(dir + "/thumbnails.bin", std::ios::binary | std::ios::trunc) << bytes;
  const auto damaged = imram::test::imram_cli("index verify " + dir);
  EXPECT_EQ(damaged.status, 1) << damaged.output;
  EXPECT_NE(damaged.output.find("imram: error: " + dir + "/thumbnails.bin: checksum mismatch"), std::string::npos)
      << damaged.output;
  // Offsets that do not span the thumbnails are refused on opening, naming the file.
  auto offsets = read_text(dir + "/thumbnail_offsets.bin");
  const std::int64_t beyond = std::int64_t(bytes.size()) + 1;
  std::memcpy(offsets.data() + offsets.size() - 8, &beyond, 8);
  std::ofstream(dir + "/thumbnail_offsets.bin", std::ios::binary | std::ios::trunc) << offsets;
  try {
    imram::GalleryIndex::open(dir);
    ADD_FAILURE() << "opened offsets past the end of thumbnails.bin";
  } catch (const imram::Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(dir + "/thumbnail_offsets.bin: ", 0), 0u) << e.what();
  }
}

// A folder of rendered pictures, features by the grid fixture backbone (256 features, 6 x 6
// regions), added to an index of a model of 256-feature regions.
TEST(IndexPictures, AFolderOfPicturesGoesStraightIntoAnIndex) {
  imram::test::TempDir dir;
  imram::test::write_small_world(dir.file("data"), 20, 6, 12, 36, 256);
  save_small_model(dir.file("model"), dir.file("data/vocab.json"), 256);
  const auto index_dir = dir.file("index");
  {
    imram::IndexOptions options;
    options.show_progress = false;
    auto writer = imram::IndexWriter::create(index_dir, dir.file("model"), options);
    writer.add_split(imram::PrecompSplit::open(dir.file("data"), "test"));
    writer.commit();
  }
  fs::create_directories(dir.file("photos"));
  const auto scenes = imram::read_scenes(dir.file("data"), "dev");
  for (int k = 0; k < 4; ++k)
    imram::write_picture(dir.file("photos/" + std::to_string(k) + ".png"),
                         imram::render_scene(scenes[std::size_t(k)], 96));
  std::ofstream(dir.file("photos/notes.jpg")) << "not a picture";
  const auto add = "--threads 1 index add " + index_dir + " --images " + dir.file("photos") + " --backbone " +
                   imram::test::testdata("backbones/grid_d256_g6.pt") + " --size 64 --quiet";
  const auto added = imram::test::imram_cli(add);
  ASSERT_EQ(added.status, 0) << added.output;
  EXPECT_TRUE(warns_about(added.output, dir.file("photos/notes.jpg"))) << added.output;
  EXPECT_NE(added.output.find("added 4 pictures (1 skipped)"), std::string::npos) << added.output;
  // The features' dataset was a temporary beside the index.
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().filename().string().find("index.tmp."), std::string::npos) << entry.path();

  const auto index = imram::GalleryIndex::open(index_dir);
  ASSERT_EQ(index->num_images(), 16);
  EXPECT_EQ(index->num_captions(), 60);
  EXPECT_EQ(index->captions_per_image(), 0);  // the photos have none
  ASSERT_TRUE(index->described());
  for (int k = 0; k < 4; ++k) {
    const auto info = index->image_info(12 + k);
    EXPECT_EQ(info.picture, fs::absolute(dir.file("photos/" + std::to_string(k) + ".png")).string());
    EXPECT_EQ(info.regions.size(), 36u);  // the grid's cells, boxes for the page
    ASSERT_TRUE(info.regions.back().has_value());
    EXPECT_NEAR((*info.regions.back())[0] + (*info.regions.back())[2], 1.0, 1e-9);
    EXPECT_EQ(decode(index->thumbnail(12 + k)).size(), cv::Size(96, 96));
  }
  // Searchable like the others: every search finds them, and the shortlist holds each photo's
  // global embedding under its own index (a query of that embedding finds it first).
  std::vector<std::int64_t> all(16);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(images_found(*index, 0), all);
  EXPECT_EQ(images_found(*index, 16), all);
  for (int k = 0; k < 4; ++k) {
    auto query = index->text_query("a red circle");
    query.global = index->image_globals()[12 + k].clone();
    EXPECT_EQ(index->stage1(imram::GallerySide::Images)->search(query, 1, nullptr).front().index, 12 + k);
  }
  EXPECT_EQ(index->searcher(imram::GallerySide::Captions, 0)->search(index->image_query(13), 5, nullptr).size(), 5u);
  index->verify();

  // The same folder again would hold its pictures twice; a split with captions can no longer be tied to the images.
  const auto manifest = read_text(index_dir + "/manifest.json");
  const auto again = imram::test::imram_cli(add);
  EXPECT_EQ(again.status, 1) << again.output;
  EXPECT_NE(again.output.find("already holds the pictures of " + fs::absolute(dir.file("photos")).string()),
            std::string::npos)
      << again.output;
  // Round 3, defect 2: other spellings of the same folder were added again (a trailing slash, a
  // relative path, a link to it).
  fs::create_directory_symlink(dir.file("photos"), dir.file("photos_link"));
  const auto backbone = " --backbone " + imram::test::testdata("backbones/grid_d256_g6.pt") + " --size 64 --quiet";
  for (const auto& [spelling, prefix] : std::vector<std::pair<std::string, std::string>>{
           {dir.file("photos/"), ""}, {"./photos", "cd " + dir.path() + " &&"}, {dir.file("photos_link"), ""}}) {
    const auto other =
        imram::test::imram_cli("--threads 1 index add " + index_dir + " --images " + spelling + backbone, prefix);
    EXPECT_EQ(other.status, 1) << spelling << ": " << other.output;
    EXPECT_NE(other.output.find("already holds the pictures of"), std::string::npos)
        << spelling << ": " << other.output;
  }
  const auto split =
      imram::test::imram_cli("index add " + index_dir + " --data " + dir.file("data") + " --split dev --quiet");
  EXPECT_EQ(split.status, 1) << split.output;
  EXPECT_NE(split.output.find("its captions are not tied to its images"), std::string::npos) << split.output;
  EXPECT_EQ(read_text(index_dir + "/manifest.json"), manifest);
}

TEST(IndexPictures, ABackboneOfAnotherFeatureSizeLeavesTheIndexAsItWas) {
  PictureWorld world;  // a model of 16-feature regions
  const auto dir = world.build("index");
  const auto manifest = read_text(dir + "/manifest.json");
  const auto backbone = imram::test::testdata("backbones/grid_d256_g6.pt");
  const auto refused = imram::test::imram_cli("--threads 1 index add " + dir + " --images " + world.dir.file("photos") +
                                              " --backbone " + backbone + " --size 64 --quiet");
  EXPECT_EQ(refused.status, 1) << refused.output;
  EXPECT_NE(refused.output.find("imram: error: " + backbone), std::string::npos) << refused.output;
  EXPECT_EQ(read_text(dir + "/manifest.json"), manifest);
  for (const auto& entry : fs::directory_iterator(world.dir.path()))
    EXPECT_EQ(entry.path().filename().string().find("index.tmp."), std::string::npos) << entry.path();
  EXPECT_NO_THROW(imram::GalleryIndex::open(dir)->verify());
  // Neither a split nor a folder: a usage error.
  EXPECT_EQ(imram::test::imram_cli("index add " + dir).status, 2);
  EXPECT_EQ(imram::test::imram_cli("index add " + dir + " --images " + world.dir.file("photos")).status, 2);
  // No picture usable: the error says so without naming the temporary folder it has removed.
  fs::create_directories(world.dir.file("broken"));
  std::ofstream(world.dir.file("broken/a.jpg")) << "not a picture";
  const auto none = imram::test::imram_cli("--threads 1 index add " + dir + " --images " + world.dir.file("broken") +
                                           " --backbone " + backbone + " --size 64 --quiet");
  EXPECT_EQ(none.status, 1) << none.output;
  EXPECT_NE(none.output.find("imram: error: " + world.dir.file("broken") + ": no picture could be used"),
            std::string::npos)
      << none.output;
  EXPECT_EQ(none.output.find(".tmp."), std::string::npos) << none.output;
  EXPECT_EQ(read_text(dir + "/manifest.json"), manifest);
}

}  // namespace
