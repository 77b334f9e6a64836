#include "imram/model/attention.h"

#include <torch/torch.h>

#include "imram/model/image_encoder.h"

namespace imram {

namespace F = torch::nn::functional;

torch::Tensor normalize_raw_scores(const torch::Tensor& scores, RawFeatureNorm norm, const torch::Tensor& query_mask) {
  auto l2_across_queries = [&](torch::Tensor a) {
    a = a * query_mask;
    return a / (safe_norm(a, -2) + 1e-8);
  };
  switch (norm) {
    case RawFeatureNorm::ClippedL2Norm:
      return l2_across_queries(F::leaky_relu(scores, F::LeakyReLUFuncOptions().negative_slope(0.1)));
    case RawFeatureNorm::L2Norm:
      return l2_across_queries(scores);
    case RawFeatureNorm::Clipped:
      return F::leaky_relu(scores, F::LeakyReLUFuncOptions().negative_slope(0.1)) * query_mask;
    case RawFeatureNorm::NoNorm:
      return scores * query_mask;
    case RawFeatureNorm::Softmax:
      return torch::softmax(scores.masked_fill(query_mask == 0, -INFINITY), -2);
  }
  return scores;
}

torch::Tensor attention_weights(const torch::Tensor& normalized, double lambda_softmax,
                                const torch::Tensor& context_padding) {
  auto logits = normalized * lambda_softmax;
  if (context_padding.defined()) logits = logits.masked_fill(context_padding, -INFINITY);
  return torch::softmax(logits, -1);
}

}  // namespace imram
