#include "bench/features_bench.h"

#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include <opencv2/imgproc.hpp>

#include "imram/data/synthetic.h"
#include "imram/engine/doctor.h"
#include "imram/error.h"
#include "imram/features/backbone.h"
#include "imram/features/picture_queue.h"
#include "imram/image/picture.h"
#include "imram/image/render.h"
#include "imram/runtime/runtime.h"
#include "imram/util/atomic_file.h"
#include "imram/util/stopwatch.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

// Photos compress far less than flat drawings: scenes with sensor-like noise, so that the JPEGs
// have a photo's size and the decoder a photo's work.
std::vector<std::string> write_jpegs(const std::string& dir, const FeaturesBenchOptions& o) {
  SyntheticOptions options;
  options.seed = o.seed;
  options.regions = 16;  // the world's features are not used: small concept vectors
  options.feature_dim = 16;
  const auto scenes = SyntheticWorld(options).generate_split("test", o.pictures + o.pictures % 2).scenes;
  std::mt19937 random(unsigned(o.seed));
  std::vector<std::string> paths;
  for (std::int64_t i = 0; i < o.pictures; ++i) {
    cv::Mat picture =
        resize_picture(render_scene(scenes[std::size_t(i)], std::max(o.width, o.height)), o.width, o.height);
    cv::Mat noise(picture.size(), CV_8UC3);
    cv::randn(noise, cv::Scalar::all(0), cv::Scalar::all(12));
    picture += noise;
    const auto path = dir + "/" + std::to_string(i) + ".jpg";
    const auto bytes = encode_jpeg(picture, 90);
    write_file_atomically(path, [&](std::ostream& out) {
      out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    });
    paths.push_back(path);
  }
  return paths;
}

double pipeline_rate(const std::vector<std::string>& paths, const Preprocessing& pre, int threads) {
  const Stopwatch clock;
  PictureQueue queue(paths, pre, PictureLimits{}, threads, 32);
  std::int64_t used = 0;
  while (auto picture = queue.next()) {
    if (!picture->problem.empty()) throw Error(picture->problem);
    ++used;
  }
  return used / (clock.milliseconds() / 1000);
}

double full_size_rate(const std::vector<std::string>& paths, const Preprocessing& pre) {
  const Stopwatch clock;
  std::vector<float> pixels(3 * std::size_t(pre.width) * std::size_t(pre.height));
  for (const auto& path : paths) preprocess_picture(read_picture(path, {}, 0), pre, pixels.data());
  return double(paths.size()) / (clock.milliseconds() / 1000);
}

}  // namespace

std::string bench_features(const FeaturesBenchOptions& o) {
  if (o.pictures < 1 || o.width < 1 || o.height < 1 || o.size < 1)
    throw Error("bench features: sizes must be positive");
  const auto dir = (fs::temp_directory_path() / ("imram-bench-features." + std::to_string(::getpid()))).string();
  struct Cleanup {
    std::string dir;
    ~Cleanup() { remove_tree(dir); }
  } cleanup{dir};
  fs::create_directories(dir);
  const auto paths = write_jpegs(dir, o);
  std::uintmax_t bytes = 0;
  for (const auto& path : paths) bytes += fs::file_size(path);

  Preprocessing pre;
  pre.width = pre.height = o.size;
  // The page cache holds the files after writing; one untimed pass evens out first-touch costs.
  pipeline_rate(paths, pre, 1);
  const double full = full_size_rate(paths, pre);
  const double one = pipeline_rate(paths, pre, 1);
  const double many = pipeline_rate(paths, pre, o.threads);
  nlohmann::json out = {{"bench", "features"},
                        {"pictures", o.pictures},
                        {"picture_size", std::to_string(o.width) + "x" + std::to_string(o.height)},
                        {"mean_jpeg_kb", double(bytes) / paths.size() / 1024},
                        {"input_size", o.size},
                        {"full_decode_pictures_per_s", full},
                        {"pipeline_1_thread_pictures_per_s", one},
                        {"reduced_vs_full_decode", one / full},
                        {"pipeline_threads", o.threads},
                        {"pipeline_pictures_per_s", many},
                        {"threads_speedup", many / one},
                        {"cores", int(std::thread::hardware_concurrency())}};
  if (!o.backbone.empty()) {
    Backbone backbone(o.backbone, BackboneContract::Grid, parse_device(o.device));
    const auto batch = torch::randn({o.batch_size, 3, o.size, o.size});
    backbone.run(batch);  // warm-up: the first call of a TorchScript module optimises its graph
    const Stopwatch clock;
    std::int64_t done = 0;
    while (done < o.pictures) {
      backbone.run(batch);
      done += o.batch_size;
    }
    const double rate = done / (clock.milliseconds() / 1000);
    out["backbone"] = o.backbone;
    out["backbone_pictures_per_s"] = rate;
    out["matmul_gflops"] = measure_matmul_gflops();
    if (const double flops = backbone.flops_per_picture(); flops > 0) {
      out["backbone_gflops"] = rate * flops / 1e9;
      out["backbone_vs_matmul"] = rate * flops / 1e9 / out["matmul_gflops"].get<double>();
    }
  }
  out["threads"] = thread_count();
  return out.dump();
}

}  // namespace imram
