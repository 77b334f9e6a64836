#pragma once
// `imram bench features`: the pictures pipeline of `imram features` on generated JPEGs of one
// size: decode + resize + normalise rate with 1 and with N decoding threads, and libjpeg's
// reduced decoding against full-size decoding (same run, same pictures); with a backbone, its
// pictures/s and, when the module says its FLOPs, GFLOP/s beside the machine's matrix product.
#include <cstdint>
#include <string>

namespace imram {

struct FeaturesBenchOptions {
  std::int64_t pictures = 200;
  int width = 640, height = 480;  // of the generated JPEGs
  int size = 224;                 // the backbone's input side
  int threads = 2;                // decoding threads of the pipeline's second run
  std::string backbone;           // optional TorchScript grid backbone
  int batch_size = 16;
  std::string device = "cpu";
  std::uint64_t seed = 1;
};

// One JSON line.
std::string bench_features(const FeaturesBenchOptions& options);

}  // namespace imram
