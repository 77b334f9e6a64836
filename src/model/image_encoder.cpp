#include "imram/model/image_encoder.h"

#include <torch/torch.h>

#include <cmath>

namespace imram {

torch::Tensor safe_norm(const torch::Tensor& x, std::int64_t dim) {
  return x.pow(2).sum(dim, /*keepdim=*/true).clamp_min(kTinySquaredNorm).sqrt();
}

torch::Tensor l2norm(const torch::Tensor& x, std::int64_t dim) { return x / (safe_norm(x, dim) + 1e-8); }

WeightNormLinearImpl::WeightNormLinearImpl(std::int64_t in, std::int64_t out) {
  auto v = torch::empty({out, in});
  const double r = std::sqrt(6.0) / std::sqrt(double(in + out));
  torch::nn::init::uniform_(v, -r, r);
  weight_v = register_parameter("weight_v", v);
  weight_g = register_parameter("weight_g", v.norm().detach().clone());
  bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor WeightNormLinearImpl::forward(const torch::Tensor& x) {
  return torch::nn::functional::linear(x, weight_g * weight_v / weight_v.norm(), bias);
}

ImageEncoderImpl::ImageEncoderImpl(const ModelConfig& config) : l2normalize(config.image_l2norm) {
  if (config.image_encoder == ImageEncoderType::WeightNorm) {
    fc_local_weight_norm = register_module("fc_local", WeightNormLinear(config.img_dim, config.embed_size));
  } else {
    fc_local = register_module("fc_local", torch::nn::Linear(config.img_dim, config.embed_size));
    // Xavier-uniform weights and zero bias, as the authors' init_weights.
    const double r = std::sqrt(6.0) / std::sqrt(double(config.img_dim + config.embed_size));
    torch::NoGradGuard no_grad;
    fc_local->weight.uniform_(-r, r);
    fc_local->bias.zero_();
  }
}

torch::Tensor ImageEncoderImpl::forward(const torch::Tensor& features) {
  auto embedded = fc_local ? fc_local->forward(features) : fc_local_weight_norm->forward(features);
  return l2normalize ? l2norm(embedded, -1) : embedded;
}

}  // namespace imram
