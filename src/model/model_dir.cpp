#include "imram/model/model_dir.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "imram/error.h"
#include "imram/model/tensor_io.h"
#include "imram/util/atomic_file.h"
#include "imram/util/json_file.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

void check_vocabulary(const Model& model, const std::string& source) {
  if (model.vocabulary && model.vocabulary->size() != model.config().vocab_size)
    throw Error(source + ": the vocabulary has " + std::to_string(model.vocabulary->size()) +
                " words but the model's embedding table has " + std::to_string(model.config().vocab_size) + " rows");
}

}  // namespace

void save_weights(const ImramModelImpl& net, const std::string& weights_dir, bool include_global_head) {
  fs::create_directories(weights_dir);
  for (const auto& item : net.named_parameters())
    if (include_global_head || item.key().rfind("global_head.", 0) != 0)
      save_npy_tensor(weights_dir + "/" + item.key() + ".npy", item.value().to(torch::kFloat32));
}

void load_weights(ImramModelImpl& net, const std::string& weights_dir) {
  if (!fs::is_directory(weights_dir)) throw Error(weights_dir + ": weights directory missing");
  std::set<std::string> expected;
  torch::NoGradGuard no_grad;
  for (auto& item : net.named_parameters()) {
    expected.insert(item.key() + ".npy");
    const std::string path = weights_dir + "/" + item.key() + ".npy";
    if (!fs::exists(path)) throw Error(path + ": missing weight '" + item.key() + "'");
    const auto array = NpyArray::open(path);
    if (array.dtype() != DType::Float32 && array.dtype() != DType::Float64)
      throw Error(path + ": weights must be float32 or float64, got " + dtype_name(array.dtype()));
    auto& parameter = item.value();
    if (array.shape() != parameter.sizes().vec())
      throw Error(path + ": shape " + array.shape_string() + " does not match the model's " +
                  c10::str(parameter.sizes()) + " for '" + item.key() + "'");
    const auto values = tensor_view(array).to(torch::kFloat32);
    if (!torch::isfinite(values).all().item<bool>())
      throw Error(path + ": weight '" + item.key() + "' holds NaN or infinite values");
    parameter.copy_(values);
  }
  for (const auto& entry : fs::directory_iterator(weights_dir)) {
    const auto name = entry.path().filename().string();
    if (!expected.count(name))
      throw Error(entry.path().string() + ": not a parameter of this model (check its config)");
  }
}

void save_model(const std::string& dir, const Model& model, const std::function<void(const std::string&)>& extra) {
  check_vocabulary(model, dir);
  require_own_directory(dir, "model directory", {"config.json", "weights"});
  write_directory_atomically(dir, [&](const std::string& tmp) {
    save_model_config(model.config(), tmp + "/config.json");
    if (model.vocabulary) model.vocabulary->save(tmp + "/vocab.json");
    if (!model.metadata.empty())
      write_file_atomically(tmp + "/metadata.json", [&](std::ostream& out) { out << model.metadata.dump(2) << "\n"; });
    save_weights(*model.net, tmp + "/weights");
    if (extra) extra(tmp);
  });
}

Model load_model(const std::string& dir, torch::Device device) {
  if (!fs::is_directory(dir)) throw Error(dir + ": model directory does not exist");
  const auto config = load_model_config(dir + "/config.json");
  Model model;
  model.net = ImramModel(config);
  load_weights(*model.net, dir + "/weights");
  if (fs::exists(dir + "/vocab.json")) model.vocabulary = Vocabulary::from_file(dir + "/vocab.json");
  if (fs::exists(dir + "/metadata.json")) {
    const auto metadata = read_json_file(dir + "/metadata.json", "model metadata");
    if (!metadata.is_object()) throw Error(dir + "/metadata.json: must be a JSON object");
    model.metadata = nlohmann::ordered_json::parse(metadata.dump());
  }
  check_vocabulary(model, dir);
  model.net->to(device);
  model.net->eval();
  return model;
}

Model import_reference_model(const std::string& reference_dir, const std::string& vocab_path) {
  const std::string config_path = reference_dir + "/config.json";
  const auto json = read_json_file(config_path, "reference config");
  // Our own key (the authors' is "iteration_step"): the first unknown key would say much less.
  if (json.is_object() && json.contains("iteration_steps"))
    throw Error(reference_dir +
                ": is an imram model directory already, not the authors' reference layout; use it "
                "as it is (imram export writes the reference layout)");
  const auto config = model_config_from_reference_json(json, config_path);
  Model model;
  model.net = ImramModel(config);
  load_weights(*model.net, reference_dir + "/weights");
  if (!vocab_path.empty()) model.vocabulary = Vocabulary::from_file(vocab_path);
  check_vocabulary(model, vocab_path.empty() ? reference_dir : vocab_path);
  model.net->eval();
  return model;
}

void export_reference_model(const Model& model, const std::string& reference_dir) {
  require_own_directory(reference_dir, "reference weight directory", {"config.json", "weights"});
  write_directory_atomically(reference_dir, [&](const std::string& tmp) {
    write_file_atomically(tmp + "/config.json",
                          [&](std::ostream& out) { out << to_reference_json(model.config()).dump(1) << "\n"; });
    save_weights(*model.net, tmp + "/weights", /*include_global_head=*/false);
  });
}

}  // namespace imram
