#pragma once
// A model of seeded random weights over a vocabulary file: what the tests index, search and
// serve with where the quality of the weights is not the point. `config` gives the sizes; its
// vocab_size becomes the vocabulary's.
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "imram/data/vocabulary.h"
#include "imram/model/config.h"
#include "imram/model/imram.h"
#include "imram/model/model_dir.h"

namespace imram::test {

inline Model random_model(const std::string& vocabulary_file, ModelConfig config, std::int64_t seed) {
  Model model;
  model.vocabulary = Vocabulary::from_file(vocabulary_file);
  config.vocab_size = model.vocabulary->size();
  torch::manual_seed(seed);
  model.net = ImramModel(config);
  return model;
}

}  // namespace imram::test
