// imram features: pictures to region features. Parity with PyTorch for both backbone contracts
// (the fixtures and their reference features come from scripts/export_test_backbones.py), every
// odd or broken picture, broken backbones, and resuming.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include <opencv2/imgcodecs.hpp>

#include "cli/cli_runner.h"
#include "imram/data/image_info.h"
#include "imram/data/npy.h"
#include "imram/error.h"
#include "imram/features/extraction.h"
#include "imram/image/picture.h"
#include "imram/image/render.h"
#include "picture_files.h"
#include "process.h"
#include "test_util.h"

namespace fs = std::filesystem;
using imram::test::Bytes;
using imram::test::error_of;
using imram::test::TempDir;
using imram::test::testdata;

namespace {

std::string backbone(const std::string& name) { return testdata("backbones/" + name); }

imram::FeatureOptions grid_options(int width = 96, int height = 64) {
  imram::FeatureOptions options;
  options.backbone = backbone("grid_d256_g6.pt");
  options.preprocessing.width = width;
  options.preprocessing.height = height;
  options.show_progress = false;
  options.batch_size = 4;
  return options;
}

struct Run {
  imram::FeatureSummary summary;
  std::vector<std::string> warnings;
};

Run extract(const std::vector<std::string>& pictures, const std::string& out, const imram::FeatureOptions& options) {
  Run run;
  run.summary = imram::extract_features({pictures, {}}, out, "test", options,
                                        [&](const std::string& line) { run.warnings.push_back(line); });
  return run;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

cv::Vec3b rgb_at(const cv::Mat& picture, int x, int y) { return picture.at<cv::Vec3b>(y, x); }

// Two halves, red left and blue right, as a JPEG.
Bytes red_blue_jpeg(int width, int height) {
  return imram::test::jpeg_file(width, height, 3, [&](int x, int, int c) -> unsigned char {
    const bool left = x < width / 2;
    return c == 0 ? (left ? 220 : 20) : c == 1 ? 20 : (left ? 20 : 220);
  });
}

TEST(Features, GridFeaturesOfAKnownPictureEqualPyTorchs) {
  TempDir dir;
  const auto run = extract({backbone("known_96x64.png")}, dir.path(), grid_options());
  EXPECT_EQ(run.summary.rows, 1);
  EXPECT_EQ(run.summary.regions, 36);
  EXPECT_EQ(run.summary.feature_dim, 256);
  const auto ours = imram::test::read_npy_as_double(dir.file("test_ims.npy"));
  const auto reference = imram::test::read_npy_as_double(backbone("known_grid_features.npy"));
  ASSERT_EQ(ours.size(), reference.size());
  double worst = 0;
  for (std::size_t i = 0; i < ours.size(); ++i) worst = std::max(worst, std::abs(ours[i] - reference[i]));
  EXPECT_LT(worst, 1e-5);
  // Each region's box is its cell of the 6 x 6 grid, in reading order.
  const auto info = imram::dataset_image_info(dir.path(), "test", 1).at(0);
  ASSERT_EQ(info.regions.size(), 36u);
  const imram::Box cell_8 = {2.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6};  // row 1, column 2
  for (int k = 0; k < 4; ++k) EXPECT_NEAR((*info.regions[8])[std::size_t(k)], cell_8[std::size_t(k)], 1e-12);
  EXPECT_EQ(info.picture, fs::absolute(backbone("known_96x64.png")).lexically_normal().string());
  EXPECT_EQ(lines_of(dir.file("test_images.txt")), std::vector<std::string>{info.picture});
}

TEST(Features, DetectorKeepsItsBestRegionsWithTheirBoxesAsPyTorchDoes) {
  TempDir dir;
  auto options = grid_options();
  options.backbone = backbone("detector_d32.pt");
  options.contract = imram::BackboneContract::Detector;
  options.regions = 10;
  extract({backbone("known_96x64.png")}, dir.path(), options);
  const auto ours = imram::test::read_npy_as_double(dir.file("test_ims.npy"));
  const auto reference = imram::test::read_npy_as_double(backbone("known_detector_features.npy"));
  ASSERT_EQ(ours.size(), reference.size());
  for (std::size_t i = 0; i < ours.size(); ++i) ASSERT_NEAR(ours[i], reference[i], 1e-5) << i;
  const auto boxes = imram::test::read_npy_as_double(backbone("known_detector_boxes.npy"));  // x1 y1 x2 y2 pixels
  const auto info = imram::dataset_image_info(dir.path(), "test", 1).at(0);
  ASSERT_EQ(info.regions.size(), 10u);
  for (std::size_t r = 0; r < 10; ++r) {
    const auto& box = *info.regions[r];
    EXPECT_NEAR(box[0], boxes[4 * r] / 96, 1e-9);
    EXPECT_NEAR(box[1], boxes[4 * r + 1] / 64, 1e-9);
    EXPECT_NEAR(box[2], (boxes[4 * r + 2] - boxes[4 * r]) / 96, 1e-9);
    EXPECT_NEAR(box[3], (boxes[4 * r + 3] - boxes[4 * r + 1]) / 64, 1e-9);
  }
  // 29 proposals: asking for 36 regions leaves every picture without enough of them.
  TempDir too_many;
  options.regions = 36;
  const auto error = error_of([&] { extract({backbone("known_96x64.png")}, too_many.path(), options); });
  EXPECT_NE(error.find("no picture could be used"), std::string::npos) << error;
  const auto skipped = lines_of(too_many.file("test_skipped.txt"));
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("found 29 regions, fewer than --regions 36"), std::string::npos) << skipped[0];
}

TEST(Features, BrokenBackbonesAreOneClearErrorAndWriteNothing) {
  TempDir dir;
  const auto picture = backbone("known_96x64.png");
  const auto not_torchscript = dir.file("notes.pt");
  std::ofstream(not_torchscript) << "not a model\n";
  struct Case {
    std::string file;
    imram::BackboneContract contract;
    std::int64_t feature_dim;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {not_torchscript, imram::BackboneContract::Grid, 0, "notes.pt: not a TorchScript module"},
      {backbone("wrong_shape.pt"), imram::BackboneContract::Grid, 0, "the grid contract is [B, D, h, w]"},
      {backbone("wrong_dtype.pt"), imram::BackboneContract::Grid, 0, "features must be floating point"},
      {backbone("too_many_cells.pt"), imram::BackboneContract::Grid, 0,
       "returned 1600 regions a picture (40 x 40 cells), more than the 1000 a picture may have"},
      {backbone("grid_d256_g6.pt"), imram::BackboneContract::Detector, 0,
       "failed on its input (one image [3,64,96]; a grid? --contract grid): RuntimeError: Dimension out of range"},
      {backbone("detector_d32.pt"), imram::BackboneContract::Grid, 0,
       "failed on its input (a batch [1,3,64,96]; a detector? --contract detector)"},
      {backbone("grid_d256_g6.pt"), imram::BackboneContract::Grid, 2048,
       "gives 256 features a region; the model expects 2048"},
      {dir.file("missing.pt"), imram::BackboneContract::Grid, 0, "missing.pt: no such backbone file"},
      {dir.path(), imram::BackboneContract::Grid, 0, dir.path() + ": a folder, not a backbone file"},
      {backbone("broken_code.pt"), imram::BackboneContract::Grid, 0,
       "broken_code.pt: its TorchScript code does not compile ("},
  };
  for (const auto& c : cases) {
    auto options = grid_options();
    options.backbone = c.file;
    options.contract = c.contract;
    options.feature_dim = c.feature_dim;
    const auto out = dir.file("out");
    const auto error = error_of([&] { extract({picture}, out, options); });
    EXPECT_NE(error.find(c.expected), std::string::npos) << c.file << ": " << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
    EXPECT_FALSE(fs::exists(out + "/test_ims.npy")) << c.file;
  }
}

TEST(Features, OddPicturesAreReadAndBrokenOnesSkippedNamingTheProblem) {
  TempDir dir;
  const auto folder = dir.file("photos");
  fs::create_directories(folder + "/nested");
  using imram::test::write_bytes;
  // Readable, if unusual.
  write_bytes(folder + "/a_one_pixel.png", imram::test::png_file(1, 1, 2, 8, {200, 10, 10}));
  write_bytes(folder + "/b_sixteen_bit.png", imram::test::png_file(8, 8, 2, 16, {65535, 0, 0}));
  write_bytes(folder + "/c_grey_alpha.png", imram::test::png_file(8, 8, 4, 8, {0, 0}));  // black, transparent
  write_bytes(folder + "/d_cmyk.jpg", imram::test::jpeg_file(16, 16, 4, [](int, int, int c) -> unsigned char {
                return c == 0 || c == 3 ? 255 : 0;  // Adobe CMYK: no cyan, full magenta and yellow, no black
              }));
  write_bytes(folder + "/nested/e_rotated.JPG", imram::test::with_exif_orientation(red_blue_jpeg(32, 16), 6));
  // Broken.
  auto truncated = red_blue_jpeg(64, 64);
  truncated.resize(truncated.size() * 2 / 3);
  write_bytes(folder + "/f_truncated.jpg", truncated);
  // Whole, end marker included, but its frame header claims 4000 x 4000 pixels of 64 x 64's data:
  // decoders fill the rest with grey and only print a warning.
  auto damaged = red_blue_jpeg(64, 64);
  for (std::size_t i = 0; i + 8 < damaged.size(); ++i)
    if (damaged[i] == 0xFF && damaged[i + 1] == 0xC0) {
      damaged[i + 5] = damaged[i + 7] = 4000 >> 8;
      damaged[i + 6] = damaged[i + 8] = 4000 & 0xFF;
      break;
    }
  write_bytes(folder + "/f_damaged.jpg", damaged);
  write_bytes(folder + "/g_bad_crc.png", imram::test::png_file(8, 8, 2, 8, {1, 2, 3}, false));
  std::ofstream(folder + "/h_text.jpg") << "hello, I am not a picture\n";
  write_bytes(folder + "/i_bomb.png", imram::test::png_declaring(20000, 20000));
  // Not pictures at all, or not reachable: listed with a warning, or not listed.
  std::ofstream(folder + "/notes.txt") << "ignored: not a picture's extension\n";
  fs::create_directory_symlink("..", folder + "/nested/loop");  // back to photos/: a cycle
  fs::create_symlink("self.png", folder + "/self.png");         // a link to itself
  fs::create_symlink("gone.jpg", folder + "/j_dangling.jpg");   // a picture moved away
  write_bytes(folder + "/k_animated.gif", Bytes{'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0, 0x3B});
  // Names that the skipped list's layout (name, tab, reason: one line each) must survive.
  write_bytes(folder + "/l\ttab.png", imram::test::png_file(8, 8, 2, 8, {9, 9, 9}));
  std::ofstream(folder + "/m\tbroken.png") << "not a picture";
  std::ofstream(folder + "/n\nline break.png") << "a name that cannot be a line";

  std::vector<std::string> listing_warnings;
  const auto listing = imram::list_pictures(folder, [&](const std::string& line) { listing_warnings.push_back(line); });
  EXPECT_EQ(listing.pictures.size(), 12u);
  EXPECT_EQ(listing.skipped.size(), 4u);
  std::string all_warnings;
  for (const auto& line : listing_warnings) all_warnings += line + "\n";
  EXPECT_NE(all_warnings.find("self.png: cannot read ("), std::string::npos) << all_warnings;
  EXPECT_NE(all_warnings.find("loop: skipped (a link to a folder already listed)"), std::string::npos) << all_warnings;
  EXPECT_NE(all_warnings.find("k_animated.gif: a format imram does not read"), std::string::npos) << all_warnings;
  EXPECT_EQ(all_warnings.find("notes.txt"), std::string::npos) << all_warnings;  // not a picture at all

  auto options = grid_options(32, 32);
  options.limits.max_pixels = 100'000'000;
  ::Run run;
  run.summary = imram::extract_features(listing, dir.file("out"), "test", options,
                                        [&](const std::string& line) { run.warnings.push_back(line); });
  EXPECT_EQ(run.summary.rows, 6);
  EXPECT_EQ(run.summary.skipped, 10);
  EXPECT_EQ(run.warnings.size(), 6u);  // the listing's own were said when listing
  const auto skipped = lines_of(dir.file("out/test_skipped.txt"));
  ASSERT_EQ(skipped.size(), 10u);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"f_damaged.jpg", "damaged JPEG (Corrupt JPEG data"},
      {"f_truncated.jpg", "truncated JPEG"},
      {"g_bad_crc.png", "damaged PNG (chunk IDAT has a bad checksum)"},
      {"h_text.jpg", "not a JPEG, PNG, WebP or BMP file"},
      {"i_bomb.png", "20000x20000 pixels is over the limit of 100000000"},
      {"j_dangling.jpg", "cannot read (No such file or directory)"},
      {"k_animated.gif", "a format imram does not read"},
      {"m\\tbroken.png", "not a JPEG, PNG, WebP or BMP file"},
      {"n\\nline break.png", "a file name with a line break"},
      {"self.png", "cannot read ("}};
  for (const auto& [name, reason] : expected) {
    const auto line = std::find_if(skipped.begin(), skipped.end(), [&](const std::string& l) {
      return l.find("/" + name + "\t") != std::string::npos;
    });
    ASSERT_NE(line, skipped.end()) << name;
    const auto tab = line->find('\t');
    EXPECT_EQ(line->find('\t', tab + 1), std::string::npos) << *line;  // one tab: the name's are escaped
    EXPECT_EQ(line->rfind(reason), tab + 1) << *line;                  // the reason, without the path again
  }
  const auto rows = lines_of(dir.file("out/test_images.txt"));
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_NE(rows[4].find("l\ttab.png"), std::string::npos);
  EXPECT_NE(rows[5].find("nested/e_rotated.JPG"), std::string::npos);

  // What the readable ones decode to: colour, alpha over white, CMYK, orientation.
  EXPECT_EQ(rgb_at(imram::read_picture(folder + "/b_sixteen_bit.png"), 3, 3), cv::Vec3b(255, 0, 0));
  EXPECT_EQ(rgb_at(imram::read_picture(folder + "/c_grey_alpha.png"), 3, 3), cv::Vec3b(255, 255, 255));
  const auto cmyk = rgb_at(imram::read_picture(folder + "/d_cmyk.jpg"), 8, 8);
  EXPECT_GT(cmyk[0], 200);
  EXPECT_LT(cmyk[1], 60);
  EXPECT_LT(cmyk[2], 60);
}

TEST(Features, AListsBlankAndCommentLinesAreNotPicturesAndAFolderInItIsSkipped) {
  TempDir dir;
  fs::create_directories(dir.file("photos"));
  imram::test::write_bytes(dir.file("photos/a.png"), imram::test::png_file(8, 8, 2, 8, {1, 2, 3}));
  std::ofstream(dir.file("list.txt")) << "# my photos\n\n   \n\t\nphotos/a.png\n  # not this either\nphotos\n";
  std::vector<std::string> warnings;
  const auto listing =
      imram::list_pictures(dir.file("list.txt"), [&](const std::string& line) { warnings.push_back(line); });
  ASSERT_EQ(listing.pictures.size(), 1u);
  EXPECT_EQ(listing.pictures[0], dir.file("photos/a.png"));
  ASSERT_EQ(listing.skipped.size(), 1u);
  EXPECT_EQ(listing.skipped[0].reason, "a folder, not a picture (" + dir.file("list.txt") + ":7)");
  ASSERT_EQ(warnings.size(), 1u);
}

TEST(Features, ExifOrientationTurnsThePictureUpright) {
  TempDir dir;
  // 32 x 16, red left and blue right, stored with orientation 6 ("rotate 90 clockwise to view"):
  // upright it is 16 x 32 with red on top.
  imram::test::write_bytes(dir.file("rotated.jpg"), imram::test::with_exif_orientation(red_blue_jpeg(32, 16), 6));
  imram::test::write_bytes(dir.file("plain.jpg"), red_blue_jpeg(32, 16));
  const auto plain = imram::read_picture(dir.file("plain.jpg"));
  EXPECT_EQ(plain.cols, 32);
  EXPECT_EQ(plain.rows, 16);
  const auto upright = imram::read_picture(dir.file("rotated.jpg"));
  ASSERT_EQ(upright.cols, 16);
  ASSERT_EQ(upright.rows, 32);
  const auto top = rgb_at(upright, 8, 4), bottom = rgb_at(upright, 8, 28);
  EXPECT_GT(top[0], 150);
  EXPECT_LT(top[2], 100);
  EXPECT_GT(bottom[2], 150);
  EXPECT_LT(bottom[0], 100);
}

TEST(Features, NonFiniteFeaturesSkipThatPictureOnly) {
  TempDir dir;
  imram::test::write_bytes(dir.file("dark.png"), imram::test::png_file(16, 16, 2, 8, {0, 0, 0}));
  imram::test::write_bytes(dir.file("light.png"), imram::test::png_file(16, 16, 2, 8, {250, 240, 230}));
  auto options = grid_options(16, 16);
  options.backbone = backbone("dark_is_not_finite.pt");
  const auto run = extract({dir.file("dark.png"), dir.file("light.png")}, dir.file("out"), options);
  EXPECT_EQ(run.summary.rows, 1);
  const auto skipped = lines_of(dir.file("out/test_skipped.txt"));
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("dark.png\tthe backbone's features for it are not finite"), std::string::npos)
      << skipped[0];
}

// Scenes of the synthetic world painted to PNGs: n different pictures.
std::vector<std::string> rendered_pictures(const std::string& folder, int n, int size) {
  imram::SyntheticOptions world;
  world.regions = 16;
  world.feature_dim = 16;
  const auto scenes = imram::SyntheticWorld(world).generate_split("test", n + n % 2).scenes;
  fs::create_directories(folder);
  std::vector<std::string> paths;
  for (int i = 0; i < n; ++i) {
    paths.push_back(folder + "/" + std::to_string(1000 + i) + ".png");
    imram::write_picture(paths.back(), imram::render_scene(scenes[std::size_t(i)], size));
  }
  return paths;
}

TEST(Features, ARerunComputesOnlyNewPicturesAndKeepsTheOldRows) {
  TempDir dir;
  const auto pictures = rendered_pictures(dir.file("photos"), 5, 48);
  const auto options = grid_options(48, 48);
  const auto first = extract({pictures.begin(), pictures.begin() + 3}, dir.file("out"), options);
  EXPECT_EQ(first.summary.computed, 3);
  const auto before = imram::test::read_npy_as_double(dir.file("out/test_ims.npy"));
  const auto again = extract(pictures, dir.file("out"), options);
  EXPECT_EQ(again.summary.computed, 2);
  EXPECT_EQ(again.summary.rows, 5);
  const auto after = imram::test::read_npy_as_double(dir.file("out/test_ims.npy"));
  ASSERT_EQ(after.size(), before.size() / 3 * 5);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), after.begin()));
  // Another preprocessing makes other features: nothing is reused.
  auto other = options;
  other.preprocessing.mean = {0.5f, 0.5f, 0.5f};
  EXPECT_EQ(extract(pictures, dir.file("out"), other).summary.computed, 5);
  EXPECT_FALSE(fs::exists(dir.file("out/test_features.partial")));
}

// A row is the features of one file's content: a picture deleted since loses its row, one
// replaced or rewritten is computed again, in an unfinished run and after a finished one alike.
TEST(Features, ARowIsReusedOnlyForTheSamePictureFile) {
  TempDir dir;
  const auto photos = dir.file("photos");
  rendered_pictures(photos, 8, 48);
  const auto others = rendered_pictures(dir.file("others"), 10, 48);  // the first 8 are the same scenes
  imram::test::write_bytes(photos + "/1003.png", Bytes(100, 7));
  auto options = grid_options(48, 48);
  options.batch_size = 1;
  // The first run stops at the broken picture, as a killed one would, after the rows before it.
  const auto stop = [](const std::string& line) { throw std::runtime_error("stopped at " + line); };
  EXPECT_THROW(imram::extract_features(imram::list_pictures(photos, stop), dir.file("out"), "test", options, stop),
               std::runtime_error);
  ASSERT_EQ(lines_of(dir.file("out/test_features.partial/log.jsonl")).size(), 3u);

  fs::remove(photos + "/1000.png");
  fs::remove(photos + "/1001.png");
  fs::rename(others[8], photos + "/1002.png");
  fs::rename(photos + "/1003.png", dir.file("broken.png"));
  fs::copy_file(others[9], photos + "/2000.png");
  const auto ignore = [](const std::string&) {};
  const auto fresh = [&](const std::string& name) {
    return extract(imram::list_pictures(photos, ignore).pictures, dir.file(name), options);
  };
  const auto expect_as_fresh = [&](const std::string& name) {
    EXPECT_EQ(imram::test::read_npy_as_double(dir.file("out/test_ims.npy")),
              imram::test::read_npy_as_double(dir.file(name + "/test_ims.npy")));
    EXPECT_EQ(lines_of(dir.file("out/test_images.txt")), lines_of(dir.file(name + "/test_images.txt")));
  };
  const auto resumed = extract(imram::list_pictures(photos, ignore).pictures, dir.file("out"), options);
  EXPECT_EQ(resumed.summary.rows, 6);
  EXPECT_EQ(resumed.summary.computed, 6);
  EXPECT_EQ(fresh("fresh").summary.rows, 6);
  expect_as_fresh("fresh");

  fs::copy_file(others[0], photos + "/1004.png", fs::copy_options::overwrite_existing);
  const auto rerun = extract(imram::list_pictures(photos, ignore).pictures, dir.file("out"), options);
  EXPECT_EQ(rerun.summary.rows, 6);
  EXPECT_EQ(rerun.summary.computed, 1);
  fresh("fresh_after_rewrite");
  expect_as_fresh("fresh_after_rewrite");
}

// Decoding on several threads changes when a picture is ready, never what its row holds or where.
TEST(Features, SeveralDecodeThreadsWriteWhatOneWrites) {
  TempDir dir;
  const auto pictures = rendered_pictures(dir.file("photos"), 9, 48);
  auto options = grid_options(48, 48);
  options.batch_size = 2;
  extract(pictures, dir.file("one"), options);
  options.decode_threads = 3;
  extract(pictures, dir.file("three"), options);
  EXPECT_EQ(imram::test::read_npy_as_double(dir.file("one/test_ims.npy")),
            imram::test::read_npy_as_double(dir.file("three/test_ims.npy")));
  EXPECT_EQ(lines_of(dir.file("one/test_images.txt")), lines_of(dir.file("three/test_images.txt")));
}

TEST(Features, AKilledRunResumesWhereItStopped) {
  TempDir dir;
  const auto pictures = rendered_pictures(dir.file("photos"), 60, 64);
  const std::string arguments = "features --backbone " + backbone("grid_d256_g6.pt") + " --images " +
                                dir.file("photos") +
                                " --split test --size 384 --batch-size 1 --quiet --threads 1 --out ";
  // The reference: one uninterrupted run.
  const auto clean = imram::test::imram_cli(arguments + dir.file("clean"));
  ASSERT_EQ(clean.status, 0) << clean.output;

  std::vector<std::string> argv = {IMRAM_BINARY};
  std::istringstream words(arguments + dir.file("out"));
  for (std::string word; words >> word;) argv.push_back(word);
  imram::test::Process run(argv, {imram::test::SpawnOptions::Output::Discard});
  const auto log = dir.file("out/test_features.partial/log.jsonl");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline && lines_of(log).size() < 5 && !run.wait_for(0.01)) {
  }
  const auto done_before_kill = lines_of(log).size();
  ASSERT_GE(done_before_kill, 5u) << "the run ended before it could be killed";
  run.kill(SIGKILL);
  run.wait_for(-1);
  ASSERT_FALSE(fs::exists(dir.file("out/test_ims.npy")));

  const auto resumed = imram::test::imram_cli(arguments + dir.file("out") + " --json");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  const auto summary = nlohmann::json::parse(resumed.output.substr(resumed.output.find('{')));
  EXPECT_EQ(summary["pictures"], 60);
  EXPECT_LE(summary["computed"].get<int>(), 60 - int(done_before_kill));
  EXPECT_EQ(imram::test::read_npy_as_double(dir.file("out/test_ims.npy")),
            imram::test::read_npy_as_double(dir.file("clean/test_ims.npy")));
  EXPECT_EQ(lines_of(dir.file("out/test_images.jsonl")), lines_of(dir.file("clean/test_images.jsonl")));
}

TEST(Features, TheCommandLineNamesTheFileAndExitsOne) {
  TempDir dir;
  std::ofstream(dir.file("fake.pt")) << "zip? no\n";
  const auto result = imram::test::imram_cli("features --backbone " + dir.file("fake.pt") + " --images " +
                                             backbone("known_96x64.png") + " --out " + dir.file("out") + " --split x");
  EXPECT_EQ(result.status, 1);
  EXPECT_TRUE(std::regex_search(result.output, std::regex("fake\\.pt: not a TorchScript module"))) << result.output;
  const auto no_pictures = imram::test::imram_cli("features --backbone " + backbone("grid_d256_g6.pt") + " --images " +
                                                  dir.path() + " --out " + dir.file("out") + " --split x");
  EXPECT_EQ(no_pictures.status, 1);
  EXPECT_NE(no_pictures.output.find("no pictures (.jpg"), std::string::npos) << no_pictures.output;
}

TEST(Render, PicturesShowTheScenesShapesInTheirColoursAndPlaces) {
  imram::Scene scene;
  scene.objects = {{0, 0, 2, 0, 0},
                   {2, 1, 2, 2, 2}};  // a large shape 0 of colour 0 top left; shape 2, colour 1, bottom right
  const auto picture = imram::render_scene(scene, 300);
  const auto shapes = imram::scene_shapes(scene);
  const auto fill = [&](std::size_t i) { return cv::Vec3b(shapes[i].fill[0], shapes[i].fill[1], shapes[i].fill[2]); };
  EXPECT_EQ(rgb_at(picture, 50, 50), fill(0));
  EXPECT_EQ(rgb_at(picture, 250, 255), fill(1));
  EXPECT_EQ(rgb_at(picture, 150, 150),
            cv::Vec3b(imram::kSceneBackground[0], imram::kSceneBackground[1], imram::kSceneBackground[2]));
}

TEST(Render, EveryShapeEnclosesAnArea) {
  // Shoelace area of each outline, in units of its radius squared: the crescent's SVG path once
  // traced the same arc twice and drew nothing.
  for (int shape = 0; shape < int(imram::synthetic_shapes().size()); ++shape) {
    imram::Scene scene;
    scene.objects = {{shape, 0, 2, 1, 1}};
    const auto outline = imram::scene_shapes(scene).at(0).outline;
    double area = 0;
    for (std::size_t i = 0; i < outline.size(); ++i) {
      const auto& a = outline[i];
      const auto& b = outline[(i + 1) % outline.size()];
      area += a[0] * b[1] - b[0] * a[1];
    }
    EXPECT_GT(std::abs(area) / 2 / (38.0 * 38.0), 0.3) << imram::synthetic_shapes()[std::size_t(shape)];
  }
}

}  // namespace
