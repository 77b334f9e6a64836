#pragma once
// Every option of an IMRAM model, under the project's names. The JSON on disk (config.json of
// a model directory) maps to it 1:1; the authors' option names are translated only here.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace imram {

enum class ImramMode { Text, Image, Full };
enum class RawFeatureNorm { ClippedL2Norm, L2Norm, Clipped, NoNorm, Softmax };
enum class ImageEncoderType { Basic, WeightNorm };
enum class GlobalPooling { Mean, Gpo };

struct ModelConfig {
  ImramMode mode = ImramMode::Full;                                 // text-, image- or full-IMRAM
  int iteration_steps = 3;                                          // K attention steps
  double lambda_softmax = 9.0;                                      // inverse temperature of the attention softmax
  RawFeatureNorm raw_feature_norm = RawFeatureNorm::ClippedL2Norm;  // normalisation of C Q^T
  bool imram_norm = false;                                          // l2-normalise the query after each memory update
  std::int64_t embed_size = 1024;                                   // d, the joint embedding size
  std::int64_t word_dim = 300;                                      // word embedding size
  std::int64_t img_dim = 2048;                                      // region feature size D
  std::int64_t vocab_size = 0;                                      // rows of the word embedding table
  int num_layers = 1;                                               // GRU layers
  bool bi_gru = true;                                               // bidirectional GRU, directions averaged
  ImageEncoderType image_encoder = ImageEncoderType::Basic;         // basic or weight_norm
  bool image_l2norm = true;                                         // l2-normalise region embeddings
  bool text_l2norm = true;                                          // l2-normalise word embeddings
  // Size of the global-embedding head for two-stage search (model/global_head.h); 0 = none.
  // Optional in config.json: absent means 0, and a model without a head writes no key.
  std::int64_t global_head = 0;
  // How that head pools an item's fragments (model/global_head.h). Optional in config.json:
  // absent means mean, the only pooling of the models made before gpo existed.
  GlobalPooling global_pooling = GlobalPooling::Mean;

  bool uses_text_direction() const { return mode != ImramMode::Image; }
  bool uses_image_direction() const { return mode != ImramMode::Text; }

  // Throws imram::Error naming the first invalid field.
  void validate() const;
};

std::string to_string(ImramMode mode);          // "text" | "image" | "full"
std::string to_string(RawFeatureNorm norm);     // the authors' spelling, e.g. "clipped_l2norm"
std::string to_string(ImageEncoderType type);   // "basic" | "weight_norm"
std::string to_string(GlobalPooling pooling);   // "mean" | "gpo"
ImramMode parse_mode(const std::string& text);  // accepts text|image|full and text_IMRAM, ...
RawFeatureNorm parse_raw_feature_norm(const std::string& text);
ImageEncoderType parse_image_encoder(const std::string& text);
GlobalPooling parse_global_pooling(const std::string& text);

nlohmann::ordered_json to_json(const ModelConfig& config);
// Strict: unknown keys and wrong types are errors naming `source` and the key.
ModelConfig model_config_from_json(const nlohmann::json& json, const std::string& source);
ModelConfig load_model_config(const std::string& path);
void save_model_config(const ModelConfig& config, const std::string& path);

// The authors' option names (embed_size, iteration_step, model_mode, no_IMRAM_norm, ...).
// Training-only options of their scripts are accepted and ignored.
ModelConfig model_config_from_reference_json(const nlohmann::json& json, const std::string& source);
nlohmann::ordered_json to_reference_json(const ModelConfig& config);

}  // namespace imram
