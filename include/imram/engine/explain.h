#pragma once
// One image-caption pair made visible: the numbers the engine scores the pair with, step by
// step. They come from the engine's own matching loop (iterative_matching with a trace), so
// the step similarities add up to the pair's score.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "imram/model/model_dir.h"

namespace imram {

struct ExplainToken {
  std::string text;      // as the tokenizer split the caption; "<start>" and "<end>" around it
  bool known = true;     // false: the vocabulary maps it to <unk>
  bool special = false;  // <start> or <end>, which the text encoder also reads
};

struct ExplainStep {
  double similarity = 0;                      // this step's contribution to the score
  std::vector<std::vector<float>> attention;  // [query fragment][context fragment], rows sum to 1
  std::vector<float> gate_mean;               // per query fragment; empty at the last step, which
                                              // updates no memory
};

struct ExplainDirection {
  std::string name;     // "text" (words attend over regions) or "image" (regions over words)
  std::string query;    // "words" or "regions"
  std::string context;  // the other one
  double score = 0;     // sum of the steps
  std::vector<ExplainStep> steps;
};

struct Explanation {
  std::string mode;  // text | image | full
  int iteration_steps = 0;
  std::int64_t regions = 0;
  std::vector<ExplainToken> tokens;
  std::vector<ExplainDirection> directions;  // the ones the model's mode uses
  double score = 0;                          // sum over directions
};

// `features`: the image's regions x img_dim floats. Throws imram::Error for a caption without
// tokens or longer than kMaxCaptionTokens.
Explanation explain_pair(Model& model, const float* features, std::int64_t regions, const std::string& caption);
// The same from the image's already encoded regions (1, R, d), e.g. an index's store.
Explanation explain_encoded_pair(Model& model, const torch::Tensor& encoded_regions, const std::string& caption);

nlohmann::ordered_json explanation_json(const Explanation& explanation);

}  // namespace imram
