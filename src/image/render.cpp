#include "imram/image/render.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "imram/error.h"
#include "imram/image/picture.h"

namespace imram {

namespace {

cv::Scalar colour(const Rgb& rgb) { return cv::Scalar(rgb[0], rgb[1], rgb[2]); }

}  // namespace

cv::Mat render_scene(const Scene& scene, int size) {
  // Coordinates in 1/16 pixel (OpenCV's fixed-point drawing), so that outlines keep the drawing's
  // sub-pixel geometry.
  constexpr int kShift = 4;
  const double scale = size / kSceneDrawingSize * (1 << kShift);
  const auto point = [&](double x, double y) {
    return cv::Point(int(std::lround(x * scale)), int(std::lround(y * scale)));
  };
  const int line_width = std::max(1, int(std::lround(size / kSceneDrawingSize * 1.5)));

  cv::Mat picture(size, size, CV_8UC3, colour(kSceneBackground));
  for (int i = 1; i < kSyntheticGrid; ++i) {
    const double at = i * kSceneDrawingSize / kSyntheticGrid;
    cv::line(picture, point(at, 0), point(at, kSceneDrawingSize), colour(kSceneGridLine), 1, cv::LINE_AA, kShift);
    cv::line(picture, point(0, at), point(kSceneDrawingSize, at), colour(kSceneGridLine), 1, cv::LINE_AA, kShift);
  }
  for (const auto& shape : scene_shapes(scene)) {
    std::vector<cv::Point> outline;
    for (const auto& [x, y] : shape.outline) outline.push_back(point(x, y));
    const std::vector<std::vector<cv::Point>> polygons{outline};
    cv::fillPoly(picture, polygons, colour(shape.fill), cv::LINE_AA, kShift);
    cv::polylines(picture, polygons, true, colour(kSceneOutline), line_width, cv::LINE_AA, kShift);
  }
  return picture;
}

std::int64_t render_split_pictures(const std::string& dir, const std::string& split, int size,
                                   const std::string& extension, int threads) {
  if (extension != "png" && extension != "jpg") throw Error("pictures are png or jpg, not '" + extension + "'");
  if (size < 16 || size > 4096) throw Error("--render-size must be 16 to 4096, got " + std::to_string(size));
  const auto scenes = read_scenes(dir, split);
  const auto folder = std::filesystem::path(dir) / "pictures" / split;
  std::filesystem::create_directories(folder);
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  std::vector<std::thread> workers;
  for (int t = 0; t < std::max(1, threads); ++t)
    workers.emplace_back([&] {
      for (std::size_t i = next++; i < scenes.size(); i = next++) {
        try {
          char name[32];
          std::snprintf(name, sizeof name, "%06zu.%s", i, extension.c_str());
          write_picture((folder / name).string(), render_scene(scenes[i], size));
        } catch (...) {
          std::lock_guard<std::mutex> lock(failure_mutex);
          if (!failure) failure = std::current_exception();
          next = scenes.size();
        }
      }
    });
  for (auto& worker : workers) worker.join();
  if (failure) std::rethrow_exception(failure);
  return std::int64_t(scenes.size());
}

}  // namespace imram
