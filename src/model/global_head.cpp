#include "imram/model/global_head.h"

#include <torch/torch.h>

#include <cmath>

#include "imram/model/image_encoder.h"
#include "imram/model/imram.h"

namespace imram {

namespace {

// VSE-infinity's sizes: a 32-wide sinusoidal code per position and a GRU of the same width; the
// softmax over positions is sharpened by 1/0.1 so that the GRU's outputs need not be large to
// approach max pooling.
constexpr std::int64_t kPositionCode = 32;
constexpr double kPoolingTemperature = 0.1;

torch::Tensor word_mask(const EncodedCaptions& captions) {
  const auto lengths = captions.lengths.to(captions.words.device(), torch::kInt64);
  const auto positions = torch::arange(captions.words.size(1), lengths.options()).unsqueeze(0);
  return positions < lengths.unsqueeze(1);
}

torch::Tensor region_mask(const EncodedImages& images) {
  if (images.region_mask.defined()) return images.region_mask.to(torch::kBool);
  return torch::ones({images.regions.size(0), images.regions.size(1)},
                     torch::TensorOptions().dtype(torch::kBool).device(images.regions.device()));
}

// Positions 0..count-1 as sines and cosines of geometrically spaced frequencies: (count, 32).
torch::Tensor position_codes(std::int64_t count, const torch::TensorOptions& options) {
  const auto position = torch::arange(count, options).unsqueeze(1);
  const auto frequency =
      torch::exp(torch::arange(0, kPositionCode, 2, options) * (-std::log(10000.0) / double(kPositionCode)));
  const auto angles = position * frequency.unsqueeze(0);
  return torch::stack({torch::sin(angles), torch::cos(angles)}, 2).view({count, kPositionCode});
}

}  // namespace

torch::Tensor pool_regions(const EncodedImages& images) {
  if (!images.region_mask.defined()) return images.regions.mean(1);
  const auto mask = images.region_mask.to(images.regions.dtype()).unsqueeze(-1);
  return (images.regions * mask).sum(1) / mask.sum(1).clamp_min(1);
}

torch::Tensor pool_words(const EncodedCaptions& captions) {
  const auto& words = captions.words;
  const auto mask = word_mask(captions).to(words.dtype()).unsqueeze(-1);
  return (words * mask).sum(1) / mask.sum(1).clamp_min(1);
}

GeneralizedPoolingImpl::GeneralizedPoolingImpl(std::int64_t embed_size, std::int64_t dim) {
  project = register_module("project", torch::nn::Linear(embed_size, dim));
  mlp_in = register_module("mlp_in", torch::nn::Linear(embed_size, std::max<std::int64_t>(dim / 2, 1)));
  mlp_out = register_module("mlp_out", torch::nn::Linear(std::max<std::int64_t>(dim / 2, 1), dim));
  positions = register_module(
      "positions",
      torch::nn::GRU(torch::nn::GRUOptions(kPositionCode, kPositionCode).batch_first(true).bidirectional(true)));
  score = register_module("score", torch::nn::Linear(kPositionCode, 1));
}

torch::Tensor GeneralizedPoolingImpl::weight_table(std::int64_t longest) {
  namespace rnn = torch::nn::utils::rnn;
  const auto options = score->weight.options();
  // Row c - 1 is an item of c fragments: the first c positions, in one packed GRU call for every c.
  const auto codes = position_codes(longest, options).unsqueeze(0).expand({longest, longest, kPositionCode});
  const auto counts = torch::arange(1, longest + 1, torch::kInt64);
  const auto packed = rnn::pack_padded_sequence(codes, counts, /*batch_first=*/true, /*enforce_sorted=*/false);
  const auto out = std::get<0>(rnn::pad_packed_sequence(std::get<0>(positions->forward_with_packed_input(packed)),
                                                        /*batch_first=*/true, 0.0, longest));
  const auto logits = score->forward(out.view({longest, longest, 2, kPositionCode}).mean(2)).view({longest, longest});
  const auto beyond = torch::arange(longest, torch::kInt64).unsqueeze(0) >= counts.unsqueeze(1);
  return torch::softmax(logits.masked_fill(beyond.to(logits.device()), -INFINITY) / kPoolingTemperature, 1);
}

torch::Tensor GeneralizedPoolingImpl::position_weights(std::int64_t count) { return weight_table(count)[count - 1]; }

torch::Tensor GeneralizedPoolingImpl::forward(const torch::Tensor& fragments, const torch::Tensor& mask) {
  const auto N = fragments.size(0), n = fragments.size(1);
  const auto values = project->forward(fragments) + mlp_out->forward(torch::relu(mlp_in->forward(fragments)));
  if (N == 0 || n == 0) return torch::zeros({N, values.size(2)}, values.options());
  // Padding sorts last and then meets weight 0; its value must be finite, or 0 * inf is NaN.
  const auto lowest = values.detach().min().item<float>() - 1.0f;
  const auto sorted = std::get<0>(values.masked_fill(~mask.unsqueeze(-1), lowest).sort(1, /*descending=*/true));
  const auto counts = mask.sum(1);
  const auto table = weight_table(n);
  const auto weights = (table.index_select(0, (counts - 1).clamp_min(0)) * (counts > 0).unsqueeze(1).to(table.dtype()))
                           .unsqueeze(-1);  // (N, n, 1)
  return (sorted * weights).sum(1);
}

GlobalHeadImpl::GlobalHeadImpl(std::int64_t embed_size, std::int64_t dim, GlobalPooling pooling_in)
    : pooling(pooling_in) {
  if (pooling == GlobalPooling::Mean) {
    image = register_module("image", torch::nn::Linear(embed_size, dim));
    text = register_module("text", torch::nn::Linear(embed_size, dim));
  } else {
    image_pooling = register_module("image_pooling", GeneralizedPooling(embed_size, dim));
    text_pooling = register_module("text_pooling", GeneralizedPooling(embed_size, dim));
  }
}

torch::Tensor GlobalHeadImpl::embed_images(const EncodedImages& images) {
  if (pooling == GlobalPooling::Mean) return l2norm(image->forward(pool_regions(images)), -1);
  return l2norm(image_pooling->forward(images.regions, region_mask(images)), -1);
}

torch::Tensor GlobalHeadImpl::embed_captions(const EncodedCaptions& captions) {
  if (pooling == GlobalPooling::Mean) return l2norm(text->forward(pool_words(captions)), -1);
  return l2norm(text_pooling->forward(captions.words, word_mask(captions)), -1);
}

}  // namespace imram
