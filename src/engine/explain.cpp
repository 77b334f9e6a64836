#include "imram/engine/explain.h"

#include <torch/torch.h>

#include "imram/data/tokenizer.h"
#include "imram/engine/encoding.h"
#include "imram/engine/scorer.h"
#include "imram/error.h"

namespace imram {

namespace {

std::vector<float> to_floats(const torch::Tensor& tensor) {
  const auto cpu = tensor.to(torch::kCPU, torch::kFloat32).contiguous();
  return {cpu.data_ptr<float>(), cpu.data_ptr<float>() + cpu.numel()};
}

ExplainDirection trace_direction(const std::string& name, const torch::Tensor& query, const torch::Tensor& context,
                                 const MemoryDistillation& memory, const ModelConfig& config) {
  MatchingTrace trace;
  const auto query_mask = torch::ones({1, query.size(1)}, query.options());
  MatchingOptions options;
  options.path = EnginePath::Tensor;
  options.trace = &trace;
  const auto steps = iterative_matching(query, query_mask, context, torch::Tensor(), memory, config, options);
  ExplainDirection direction;
  direction.name = name;
  direction.query = name == "text" ? "words" : "regions";
  direction.context = name == "text" ? "regions" : "words";
  for (std::size_t k = 0; k < trace.attention.size(); ++k) {
    ExplainStep step;
    step.similarity = steps[std::int64_t(k)].to(torch::kCPU, torch::kFloat64).item<double>();
    const auto alpha = trace.attention[k][0][0];  // (n_q, n_c) of the one pair
    for (std::int64_t q = 0; q < alpha.size(0); ++q) step.attention.push_back(to_floats(alpha[q]));
    if (k < trace.gate_mean.size()) step.gate_mean = to_floats(trace.gate_mean[k][0][0]);
    direction.score += step.similarity;
    direction.steps.push_back(std::move(step));
  }
  return direction;
}

}  // namespace

Explanation explain_pair(Model& model, const float* features, std::int64_t regions, const std::string& caption) {
  torch::NoGradGuard no_grad;
  const auto feature_tensor =
      torch::from_blob(const_cast<float*>(features), {1, regions, model.config().img_dim}, torch::kFloat32);
  check_finite_features(feature_tensor, 0, "image");
  return explain_encoded_pair(model, model.net->encode_images(feature_tensor).regions, caption);
}

Explanation explain_encoded_pair(Model& model, const torch::Tensor& encoded_regions, const std::string& caption) {
  if (!model.vocabulary) throw Error("explain: the model has no vocab.json; it cannot read text");
  const auto& config = model.config();
  Explanation explanation;
  explanation.mode = to_string(config.mode);
  explanation.iteration_steps = config.iteration_steps;
  explanation.regions = encoded_regions.size(1);
  explanation.tokens.push_back({"<start>", true, true});
  for (const auto& token : query_tokens(caption, kMaxCaptionTokens))
    explanation.tokens.push_back({token, model.vocabulary->contains(token), false});
  explanation.tokens.push_back({"<end>", true, true});

  torch::NoGradGuard no_grad;
  const auto ids = encode_caption_texts(*model.vocabulary, {caption}, "caption");
  const auto padded = pad_captions(ids, 0, 1);
  const auto words = model.net->encode_captions(padded.ids, padded.lengths).words;
  const auto image = encoded_regions.to(model.net->parameters().front().device(), torch::kFloat32);
  if (config.uses_text_direction())
    explanation.directions.push_back(trace_direction("text", words, image, model.net->text_memory(), config));
  if (config.uses_image_direction())
    explanation.directions.push_back(trace_direction("image", image, words, model.net->image_memory(), config));
  for (const auto& direction : explanation.directions) explanation.score += direction.score;
  return explanation;
}

nlohmann::ordered_json explanation_json(const Explanation& explanation) {
  nlohmann::ordered_json tokens = nlohmann::ordered_json::array();
  for (const auto& token : explanation.tokens)
    tokens.push_back({{"text", token.text}, {"known", token.known}, {"special", token.special}});
  nlohmann::ordered_json directions = nlohmann::ordered_json::array();
  for (const auto& direction : explanation.directions) {
    nlohmann::ordered_json steps = nlohmann::ordered_json::array();
    for (std::size_t k = 0; k < direction.steps.size(); ++k) {
      const auto& step = direction.steps[k];
      nlohmann::ordered_json item{{"step", k + 1}, {"similarity", step.similarity}, {"attention", step.attention}};
      item["gate_mean"] = step.gate_mean.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(step.gate_mean);
      steps.push_back(std::move(item));
    }
    directions.push_back({{"direction", direction.name},
                          {"query", direction.query},
                          {"context", direction.context},
                          {"score", direction.score},
                          {"steps", std::move(steps)}});
  }
  return {{"mode", explanation.mode},       {"iteration_steps", explanation.iteration_steps},
          {"regions", explanation.regions}, {"tokens", std::move(tokens)},
          {"score", explanation.score},     {"directions", std::move(directions)}};
}

}  // namespace imram
