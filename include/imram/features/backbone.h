#pragma once
// A user's image backbone: a TorchScript module exported once with PyTorch (docs/features.md has
// the recipes), run by LibTorch on any device. Two contracts:
//  - grid:     forward(images[B,3,H,W]) -> feature map [B,D,h,w]; each of the h*w cells is a
//              region whose box is the cell's share of the picture;
//  - detector: forward(image[3,H,W]) -> (boxes[N,4] as x1,y1,x2,y2 in input pixels, features[N,D],
//              scores[N]); the regions are the `regions` boxes of highest score.
// Output that breaks the contract (a shape, a dtype, a feature size other than the model's) is
// an imram::Error naming the backbone; what is wrong with one picture only (a detector finding
// too few boxes, features that are not finite) is that picture's `problem`.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "imram/data/image_info.h"

namespace torch::jit {
struct Module;
}

namespace imram {

// The most regions a picture may have: a detector's --regions, a grid's h x w cells. A backbone
// that returns more is refused at its first batch, before its rows are kept (a 1,000 x 1,000 map
// of six pictures took 17 GB before it was stopped).
inline constexpr int kMaxRegions = 1000;

enum class BackboneContract { Grid, Detector };
BackboneContract parse_backbone_contract(const std::string& name);  // "grid" | "detector"
const char* backbone_contract_name(BackboneContract contract);

struct PictureRegions {
  torch::Tensor features;  // [R, D] float32, CPU
  std::vector<Box> boxes;  // R boxes, fractions of the picture
  std::string problem;     // non-empty: this picture has no usable regions, and why
};

class Backbone {
 public:
  // `regions`: how many boxes a detector's pictures keep (unused by grids). `feature_dim`: the
  // size a region's features must have (a model's img_dim), 0 for any.
  Backbone(const std::string& path, BackboneContract contract, torch::Device device, int regions = 36,
           std::int64_t feature_dim = 0);
  ~Backbone();

  // `images`: [B,3,H,W] float32, preprocessed (features/preprocessing.h); one result per image.
  std::vector<PictureRegions> run(const torch::Tensor& images);

  // The module's own `flops_per_picture` attribute (docs/features.md), 0 when it has none.
  double flops_per_picture() const;
  const std::string& path() const { return path_; }
  BackboneContract contract() const { return contract_; }

 private:
  std::vector<PictureRegions> run_grid(const torch::Tensor& images);
  std::vector<PictureRegions> run_detector(const torch::Tensor& images);
  [[noreturn]] void broken(const std::string& what) const;

  std::string path_;
  BackboneContract contract_;
  torch::Device device_;
  int regions_;
  std::int64_t feature_dim_;
  std::unique_ptr<torch::jit::Module> module_;
};

}  // namespace imram
