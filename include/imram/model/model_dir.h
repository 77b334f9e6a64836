#pragma once
// A trained model is a directory (docs/model_directory.md):
//   config.json          every model option, the project's names (model/config.h)
//   vocab.json           the vocabulary, the authors' JSON format (absent for id-only imports)
//   weights/<name>.npy   one float32 array per parameter, named as the authors' state_dict
//   metadata.json        optional: where an imported model came from (checkpoint epoch, best_rsum)
// Training runs add optimizer.pt and training.json. Directories are written atomically.
// The authors' layout ("reference weight directory": config.json with their option names and
// weights/<name>.npy) is converted by import_reference_model / export_reference_model.
#include <torch/types.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "imram/data/vocabulary.h"
#include "imram/model/imram.h"

namespace imram {

struct Model {
  ImramModel net{nullptr};
  std::optional<Vocabulary> vocabulary;
  // Plain facts about the model's origin (an imported checkpoint's path, format, epoch and
  // best_rsum); empty for models trained here from scratch.
  nlohmann::ordered_json metadata = nlohmann::ordered_json::object();
  const ModelConfig& config() const { return net->config; }
};

// `extra(tmp_dir)` may add files (optimizer state, ...) to the directory before it is swapped in.
void save_model(const std::string& dir, const Model& model, const std::function<void(const std::string&)>& extra = {});
Model load_model(const std::string& dir, torch::Device device = torch::kCPU);

// Strict: every parameter present with its exact shape, finite values, no unknown files.
void load_weights(ImramModelImpl& net, const std::string& weights_dir);
// Without include_global_head, only the authors' parameters (what their code can load).
void save_weights(const ImramModelImpl& net, const std::string& weights_dir, bool include_global_head = true);

Model import_reference_model(const std::string& reference_dir, const std::string& vocab_path = "");
void export_reference_model(const Model& model, const std::string& reference_dir);

}  // namespace imram
