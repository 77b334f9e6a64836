#include "imram/features/backbone.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "imram/error.h"

namespace imram {

namespace {

std::string first_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of("\n ");
  if (end == std::string::npos) return text;
  const auto begin = text.rfind('\n', end);
  return text.substr(begin == std::string::npos ? 0 : begin + 1,
                     end + 1 - (begin == std::string::npos ? 0 : begin + 1));
}

std::string shape_text(const torch::Tensor& tensor) {
  std::ostringstream out;
  out << "[";
  for (std::int64_t i = 0; i < tensor.dim(); ++i) out << (i ? "," : "") << tensor.size(i);
  out << "]";
  return out.str();
}

std::string non_finite_problem(const torch::Tensor& features) {
  return torch::isfinite(features).all().item<bool>() ? "" : "the backbone's features for it are not finite";
}

}  // namespace

BackboneContract parse_backbone_contract(const std::string& name) {
  if (name == "grid") return BackboneContract::Grid;
  if (name == "detector") return BackboneContract::Detector;
  throw Error("unknown backbone contract '" + name + "' (grid or detector)");
}

const char* backbone_contract_name(BackboneContract contract) {
  return contract == BackboneContract::Grid ? "grid" : "detector";
}

Backbone::Backbone(const std::string& path, BackboneContract contract, torch::Device device, int regions,
                   std::int64_t feature_dim)
    : path_(path), contract_(contract), device_(device), regions_(regions), feature_dim_(feature_dim) {
  if (contract == BackboneContract::Detector && regions <= 0)
    throw Error("--regions must be positive, got " + std::to_string(regions));
  try {
    module_ = std::make_unique<torch::jit::Module>(torch::jit::load(path, device));
  } catch (const c10::Error& e) {
    throw Error(path + ": not a TorchScript module (" + first_line(e.what_without_backtrace()) + ")");
  } catch (const std::exception& e) {  // the TorchScript compiler's, for code that does not parse
    throw Error(path + ": its TorchScript code does not compile (" + first_line(e.what()) + ")");
  }
  module_->eval();
}

Backbone::~Backbone() = default;

double Backbone::flops_per_picture() const {
  return module_->hasattr("flops_per_picture") ? double(module_->attr("flops_per_picture").toInt()) : 0.0;
}

void Backbone::broken(const std::string& what) const {
  throw Error(path_ + ": the " + backbone_contract_name(contract_) + " backbone " + what);
}

std::vector<PictureRegions> Backbone::run(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  std::string why;
  try {
    return contract_ == BackboneContract::Grid ? run_grid(images) : run_detector(images);
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    why = first_line(e.what_without_backtrace());
  } catch (const std::exception& e) {  // the TorchScript interpreter's: a traceback, the cause last
    why = last_line(e.what());
  }
  const bool grid = contract_ == BackboneContract::Grid;
  broken("failed on its input (" +
         (grid ? "a batch " + shape_text(images) + "; a detector? --contract detector"
               : "one image " + shape_text(images[0]) + "; a grid? --contract grid") +
         "): " + why);
}

std::vector<PictureRegions> Backbone::run_grid(const torch::Tensor& images) {
  const auto output = module_->forward({images.to(device_)});
  if (output.isTuple())
    broken("returned a tuple where the grid contract returns one feature map (a detector? --contract detector)");
  if (!output.isTensor()) broken("returned " + output.tagKind() + ", not a feature map tensor");
  const auto map = output.toTensor();
  if (!map.is_floating_point())
    broken("returned " + std::string(c10::toString(map.scalar_type())) + " values; features must be floating point");
  if (map.dim() != 4 || map.size(0) != images.size(0))
    broken("returned shape " + shape_text(map) + " for " + std::to_string(images.size(0)) +
           " pictures; the grid contract is [B, D, h, w]");
  const auto dim = map.size(1), rows = map.size(2), cols = map.size(3);
  if (feature_dim_ > 0 && dim != feature_dim_)
    broken("gives " + std::to_string(dim) + " features a region; the model expects " + std::to_string(feature_dim_));
  if (rows * cols == 0) broken("returned an empty feature map " + shape_text(map));
  if (rows * cols > kMaxRegions)
    broken("returned " + std::to_string(rows * cols) + " regions a picture (" + std::to_string(rows) + " x " +
           std::to_string(cols) + " cells), more than the " + std::to_string(kMaxRegions) +
           " a picture may have: pool its map smaller, or give a smaller --size");
  // [B, D, h, w] -> [B, h*w, D]: regions in reading order, as the boxes below.
  const auto regions = map.to(torch::kCPU, torch::kFloat32).flatten(2).transpose(1, 2).contiguous();
  std::vector<Box> boxes;
  for (std::int64_t row = 0; row < rows; ++row)
    for (std::int64_t col = 0; col < cols; ++col)
      boxes.push_back({double(col) / cols, double(row) / rows, 1.0 / cols, 1.0 / rows});
  std::vector<PictureRegions> out;
  for (std::int64_t i = 0; i < regions.size(0); ++i) {
    PictureRegions picture{regions[i], boxes, ""};
    picture.problem = non_finite_problem(picture.features);
    out.push_back(std::move(picture));
  }
  return out;
}

std::vector<PictureRegions> Backbone::run_detector(const torch::Tensor& images) {
  const double height = double(images.size(2)), width = double(images.size(3));
  std::vector<PictureRegions> out;
  for (std::int64_t i = 0; i < images.size(0); ++i) {
    const auto output = module_->forward({images[i].to(device_)});
    if (output.isTensor())
      broken(
          "returned one tensor where the detector contract returns (boxes, features, scores) (a grid? --contract "
          "grid)");
    if (!output.isTuple() || output.toTuple()->elements().size() != 3)
      broken("must return a tuple (boxes[N,4], features[N,D], scores[N])");
    const auto& elements = output.toTuple()->elements();
    for (const auto& element : elements)
      if (!element.isTensor()) broken("returned a tuple holding " + element.tagKind() + "; it must hold three tensors");
    auto boxes = elements[0].toTensor(), features = elements[1].toTensor(), scores = elements[2].toTensor();
    if (!boxes.is_floating_point() || !features.is_floating_point() || !scores.is_floating_point())
      broken("must return floating-point boxes, features and scores");
    const auto found = boxes.dim() == 2 ? boxes.size(0) : -1;
    if (boxes.dim() != 2 || boxes.size(1) != 4 || features.dim() != 2 || features.size(0) != found ||
        scores.dim() != 1 || scores.size(0) != found)
      broken("returned boxes " + shape_text(boxes) + ", features " + shape_text(features) + ", scores " +
             shape_text(scores) + "; the detector contract is [N,4], [N,D], [N]");
    if (feature_dim_ > 0 && features.size(1) != feature_dim_)
      broken("gives " + std::to_string(features.size(1)) + " features a region; the model expects " +
             std::to_string(feature_dim_));
    PictureRegions picture;
    if (found < regions_) {
      picture.problem =
          "the detector found " + std::to_string(found) + " regions, fewer than --regions " + std::to_string(regions_);
      out.push_back(std::move(picture));
      continue;
    }
    const auto keep = std::get<1>(scores.to(torch::kCPU, torch::kFloat32).topk(regions_));
    picture.features = features.to(torch::kCPU, torch::kFloat32).index_select(0, keep).contiguous();
    const auto kept_boxes = boxes.to(torch::kCPU, torch::kFloat64).index_select(0, keep).contiguous();
    const auto* b = kept_boxes.data_ptr<double>();
    for (std::int64_t r = 0; r < regions_; ++r, b += 4) {
      if (!std::isfinite(b[0]) || !std::isfinite(b[1]) || !std::isfinite(b[2]) || !std::isfinite(b[3]))
        picture.problem = "the detector's boxes for it are not finite";
      const double x1 = std::clamp(b[0] / width, 0.0, 1.0), y1 = std::clamp(b[1] / height, 0.0, 1.0);
      const double x2 = std::clamp(b[2] / width, 0.0, 1.0), y2 = std::clamp(b[3] / height, 0.0, 1.0);
      picture.boxes.push_back({x1, y1, std::max(0.0, x2 - x1), std::max(0.0, y2 - y1)});
    }
    if (picture.problem.empty()) picture.problem = non_finite_problem(picture.features);
    out.push_back(std::move(picture));
  }
  return out;
}

}  // namespace imram
