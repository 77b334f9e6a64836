#pragma once
// Region features -> joint space: v_r = l2norm(W_v f_r + b_v).
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "imram/model/config.h"

namespace imram {

// W = g * V / ||V|| with one scalar g (PyTorch's weight_norm with dim=None).
struct WeightNormLinearImpl : torch::nn::Module {
  WeightNormLinearImpl(std::int64_t in, std::int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight_g, weight_v, bias;
};
TORCH_MODULE(WeightNormLinear);

struct ImageEncoderImpl : torch::nn::Module {
  explicit ImageEncoderImpl(const ModelConfig& config);
  // (N, R, D) float -> (N, R, d)
  torch::Tensor forward(const torch::Tensor& features);

  bool l2normalize = true;
  // Both kinds are registered as `fc_local`, the authors' name: img_enc.fc_local.{weight,bias}
  // for `basic`, img_enc.fc_local.{weight_g,weight_v,bias} for `weight_norm` (weight_g 0-d).
  torch::nn::Linear fc_local{nullptr};
  WeightNormLinear fc_local_weight_norm{nullptr};
};
TORCH_MODULE(ImageEncoder);

// Padding makes all-zero vectors whose norm has a NaN gradient (0/0), and a mask multiplying
// that NaN by 0 still gives NaN. Clamping the squared norm this far below every real value
// changes no result but gives those vectors a zero gradient.
constexpr double kTinySquaredNorm = 1e-30;
// sqrt(sum x^2) along `dim` (kept), with a gradient that is finite at 0.
torch::Tensor safe_norm(const torch::Tensor& x, std::int64_t dim);

// x / (sqrt(sum x^2) + 1e-8) along `dim`, exactly as the authors' l2norm.
torch::Tensor l2norm(const torch::Tensor& x, std::int64_t dim = -1);

}  // namespace imram
