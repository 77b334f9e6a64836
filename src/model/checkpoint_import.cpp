// A checkpoint of the authors' training script -> a model directory's content
// (docs/checkpoints.md).
#include <torch/torch.h>

#include <map>

#include "imram/error.h"
#include "imram/model/checkpoint.h"

namespace imram {

namespace {

// The options that decide what the model computes. A checkpoint without one of them cannot be
// imported: a default standing in for it could silently give other scores.
constexpr const char* kModelOptions[] = {
    "model_mode", "iteration_step", "lambda_softmax", "raw_feature_norm", "no_IMRAM_norm", "precomp_enc_type",
    "no_imgnorm", "no_txtnorm",     "img_dim",        "embed_size",       "word_dim",      "vocab_size",
    "num_layers", "bi_gru"};

const std::string kDataParallelPrefix = "module.";

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

CheckpointImport import_checkpoint(const std::string& path, const std::string& vocab_path) {
  auto checkpoint = read_checkpoint(path);
  CheckpointImport result;
  result.format = checkpoint.format;
  if (!checkpoint.options)
    throw Error(path + ": the checkpoint has no 'opt' (the training options), so its model cannot be rebuilt");
  for (const char* option : kModelOptions)
    if (!checkpoint.options->contains(option))
      throw Error(path + ": 'opt' lacks the model option '" + std::string(option) + "'");
  const auto config = model_config_from_reference_json(*checkpoint.options, path + " (opt)");
  if (checkpoint.state_dict.empty()) throw Error(path + ": the checkpoint has no 'model' state dict");

  // nn.DataParallel prefixes every name; a checkpoint saved from the bare model has none.
  bool all_prefixed = true;
  for (const auto& entry : checkpoint.state_dict)
    all_prefixed = all_prefixed && starts_with(entry.first, kDataParallelPrefix);
  result.stripped_module_prefix = all_prefixed;
  std::map<std::string, torch::Tensor> weights;
  for (auto& [name, tensor] : checkpoint.state_dict) {
    const auto key = all_prefixed ? name.substr(kDataParallelPrefix.size()) : name;
    if (!weights.emplace(key, tensor).second) throw Error(path + ": weight '" + key + "' appears twice");
  }

  Model& model = result.model;
  model.net = ImramModel(config);
  torch::NoGradGuard no_grad;
  for (auto& parameter : model.net->named_parameters()) {
    const auto found = weights.find(parameter.key());
    if (found == weights.end())
      throw Error(path + ": weight '" + parameter.key() + "' of a " + to_string(config.mode) + "-IMRAM model (" +
                  to_string(config.image_encoder) + " image encoder) is missing");
    const auto& tensor = found->second;
    if (!tensor.is_floating_point())
      throw Error(path + ": weight '" + parameter.key() + "' is " + std::string(c10::toString(tensor.scalar_type())) +
                  ", not a floating-point tensor");
    if (tensor.sizes() != parameter.value().sizes())
      throw Error(path + ": weight '" + parameter.key() + "' has shape " + c10::str(tensor.sizes()) +
                  ", the options in 'opt' make it " + c10::str(parameter.value().sizes()));
    const auto values = tensor.to(torch::kFloat32);
    if (!torch::isfinite(values).all().item<bool>())
      throw Error(path + ": weight '" + parameter.key() + "' holds NaN or infinite values");
    parameter.value().copy_(values);
    weights.erase(found);
  }
  for (const auto& entry : weights) result.ignored.push_back("model." + entry.first);
  for (const auto& key : checkpoint.top_level_keys)
    if (key != "model" && key != "opt" && key != "epoch" && key != "best_rsum") result.ignored.push_back(key);

  model.metadata["source"] = path;
  model.metadata["format"] = checkpoint.format;
  for (const char* key : {"epoch", "best_rsum"})
    if (checkpoint.metadata.contains(key)) model.metadata[key] = checkpoint.metadata[key];
  if (!vocab_path.empty()) {
    model.vocabulary = Vocabulary::from_file(vocab_path);
    if (model.vocabulary->size() != config.vocab_size)
      throw Error(vocab_path + ": the vocabulary has " + std::to_string(model.vocabulary->size()) +
                  " words but the checkpoint's embedding table has " + std::to_string(config.vocab_size) + " rows");
  }
  model.net->eval();
  return result;
}

}  // namespace imram
