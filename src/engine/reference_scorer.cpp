#include "imram/engine/reference_scorer.h"

#include <torch/torch.h>

namespace imram {

namespace {

namespace F = torch::nn::functional;

// func_attention of the authors: query (n, n_q, d), context (n, n_c, d) -> attended (n, n_q, d).
torch::Tensor func_attention(const torch::Tensor& query, const torch::Tensor& context, const ModelConfig& config) {
  auto attn = torch::bmm(context, query.transpose(1, 2));  // (n, n_c, n_q)
  switch (config.raw_feature_norm) {
    case RawFeatureNorm::Softmax:
      attn = torch::softmax(attn, 2);
      break;
    case RawFeatureNorm::L2Norm:
      attn = l2norm(attn, 2);
      break;
    case RawFeatureNorm::ClippedL2Norm:
      attn = l2norm(F::leaky_relu(attn, F::LeakyReLUFuncOptions().negative_slope(0.1)), 2);
      break;
    case RawFeatureNorm::Clipped:
      attn = F::leaky_relu(attn, F::LeakyReLUFuncOptions().negative_slope(0.1));
      break;
    case RawFeatureNorm::NoNorm:
      break;
  }
  attn = torch::softmax(attn.transpose(1, 2) * config.lambda_softmax, 2);  // (n, n_q, n_c)
  return torch::bmm(attn, context);
}

torch::Tensor gated_memory(const torch::nn::Linear& linear, const torch::nn::Linear& gate, const torch::Tensor& query,
                           const torch::Tensor& attended) {
  const auto cat = torch::cat({query, attended}, 2);
  const auto o = torch::tanh(F::linear(cat, linear->weight, linear->bias));
  const auto g = torch::sigmoid(F::linear(cat, gate->weight, gate->bias));
  return query * g + o * (1 - g);
}

torch::Tensor cosine(const torch::Tensor& a, const torch::Tensor& b) {
  return (a * b).sum(2) / (a.norm(2, 2) * b.norm(2, 2)).clamp_min(1e-8);
}

}  // namespace

PairScores reference_score_pairs(const ImramModelImpl& model, const EncodedImages& images,
                                 const EncodedCaptions& captions) {
  const auto& config = model.config;
  const int K = config.iteration_steps;
  const auto N = images.regions.size(0), M = captions.words.size(0);
  std::vector<std::vector<torch::Tensor>> t2i(K), i2t(K);
  for (std::int64_t j = 0; j < M; ++j) {
    const auto n_word = captions.lengths[j].item<std::int64_t>();
    const auto caption = captions.words[j].narrow(0, 0, n_word).unsqueeze(0).repeat({N, 1, 1});
    for (int direction = 0; direction < 2; ++direction) {
      const bool text = direction == 0;
      if (text ? !config.uses_text_direction() : !config.uses_image_direction()) continue;
      const auto& original = text ? caption : images.regions;
      const auto& context = text ? images.regions : caption;
      auto query = original;
      for (int k = 0; k < K; ++k) {
        const auto attended = func_attention(query, context, config);
        (text ? t2i : i2t)[k].push_back(cosine(original, attended).mean(1));
        query = text ? gated_memory(model.linear_t2i, model.gate_t2i, query, attended)
                     : gated_memory(model.linear_i2t, model.gate_i2t, query, attended);
        if (config.imram_norm) query = l2norm(query, -1);
      }
    }
  }
  PairScores result;
  result.total = torch::zeros({N, M}, images.regions.options());
  auto collect = [&](std::vector<std::vector<torch::Tensor>>& steps) {
    std::vector<torch::Tensor> per_step;
    for (auto& columns : steps) per_step.push_back(torch::stack(columns, 1));
    auto stacked = torch::stack(per_step);
    result.total = result.total + stacked.sum(0);
    return stacked;
  };
  if (config.uses_text_direction()) result.steps_t2i = collect(t2i);
  if (config.uses_image_direction()) result.steps_i2t = collect(i2t);
  return result;
}

}  // namespace imram
