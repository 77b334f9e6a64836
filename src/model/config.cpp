#include "imram/model/config.h"

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "imram/error.h"
#include "imram/util/atomic_file.h"
#include "imram/util/json_file.h"

namespace imram {

std::string to_string(ImramMode mode) {
  switch (mode) {
    case ImramMode::Text:
      return "text";
    case ImramMode::Image:
      return "image";
    case ImramMode::Full:
      return "full";
  }
  return "?";
}

std::string to_string(RawFeatureNorm norm) {
  switch (norm) {
    case RawFeatureNorm::ClippedL2Norm:
      return "clipped_l2norm";
    case RawFeatureNorm::L2Norm:
      return "l2norm";
    case RawFeatureNorm::Clipped:
      return "clipped";
    case RawFeatureNorm::NoNorm:
      return "no_norm";
    case RawFeatureNorm::Softmax:
      return "softmax";
  }
  return "?";
}

std::string to_string(ImageEncoderType type) { return type == ImageEncoderType::Basic ? "basic" : "weight_norm"; }

ImramMode parse_mode(const std::string& text) {
  if (text == "text" || text == "text_IMRAM") return ImramMode::Text;
  if (text == "image" || text == "image_IMRAM") return ImramMode::Image;
  if (text == "full" || text == "full_IMRAM") return ImramMode::Full;
  throw Error("mode '" + text + "' is not one of text, image, full");
}

RawFeatureNorm parse_raw_feature_norm(const std::string& text) {
  for (auto norm : {RawFeatureNorm::ClippedL2Norm, RawFeatureNorm::L2Norm, RawFeatureNorm::Clipped,
                    RawFeatureNorm::NoNorm, RawFeatureNorm::Softmax})
    if (to_string(norm) == text) return norm;
  throw Error("raw_feature_norm '" + text + "' is not one of clipped_l2norm, l2norm, clipped, no_norm, softmax");
}

ImageEncoderType parse_image_encoder(const std::string& text) {
  if (text == "basic") return ImageEncoderType::Basic;
  if (text == "weight_norm") return ImageEncoderType::WeightNorm;
  throw Error("image encoder '" + text + "' is not one of basic, weight_norm");
}

std::string to_string(GlobalPooling pooling) { return pooling == GlobalPooling::Gpo ? "gpo" : "mean"; }

GlobalPooling parse_global_pooling(const std::string& text) {
  if (text == "mean") return GlobalPooling::Mean;
  if (text == "gpo") return GlobalPooling::Gpo;
  throw Error("global pooling '" + text + "' is not one of mean, gpo");
}

void ModelConfig::validate() const {
  auto fail = [](const std::string& field, const std::string& why) {
    throw Error("model config: " + field + " " + why);
  };
  if (iteration_steps < 1) fail("iteration_steps", "must be >= 1");
  if (!(lambda_softmax > 0)) fail("lambda_softmax", "must be > 0");
  if (embed_size < 1) fail("embed_size", "must be >= 1");
  if (word_dim < 1) fail("word_dim", "must be >= 1");
  if (img_dim < 1) fail("img_dim", "must be >= 1");
  if (vocab_size < 5) fail("vocab_size", "must be >= 5 (4 special tokens and at least one word)");
  if (num_layers < 1) fail("num_layers", "must be >= 1");
  if (global_head < 0) fail("global_head", "must be >= 0 (0: no global head)");
  if (global_head == 0 && global_pooling != GlobalPooling::Mean)
    fail("global_pooling", "needs a global head (global_head > 0)");
}

namespace {

template <class T>
T typed(const nlohmann::json& value, const std::string& key, const std::string& source) {
  try {
    if constexpr (std::is_same_v<T, bool>) {
      if (!value.is_boolean()) throw Error("");
    } else if constexpr (std::is_integral_v<T>) {
      if (!value.is_number_integer()) throw Error("");
      // get<int> of 4294967297 would wrap around to 1.
      if (value.is_number_unsigned() ? value.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<T>::max())
                                     : value.get<std::int64_t>() < std::int64_t(std::numeric_limits<T>::min()) ||
                                           value.get<std::int64_t>() > std::int64_t(std::numeric_limits<T>::max()))
        throw Error("");
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!value.is_number()) throw Error("");
    } else {
      if (!value.is_string()) throw Error("");
    }
    return value.get<T>();
  } catch (const std::exception&) {
    const char* expected = std::is_same_v<T, bool>       ? "a boolean"
                           : std::is_integral_v<T>       ? "an integer"
                           : std::is_floating_point_v<T> ? "a number"
                                                         : "a string";
    std::string range;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
      range = " from " + std::to_string(std::numeric_limits<T>::min()) + " to " +
              std::to_string(std::numeric_limits<T>::max());
    throw Error(source + ": \"" + key + "\" must be " + expected + range + ", got " + value.dump());
  }
}

}  // namespace

nlohmann::ordered_json to_json(const ModelConfig& c) {
  nlohmann::ordered_json json{
      {"mode", to_string(c.mode)},
      {"iteration_steps", c.iteration_steps},
      {"lambda_softmax", c.lambda_softmax},
      {"raw_feature_norm", to_string(c.raw_feature_norm)},
      {"imram_norm", c.imram_norm},
      {"embed_size", c.embed_size},
      {"word_dim", c.word_dim},
      {"img_dim", c.img_dim},
      {"vocab_size", c.vocab_size},
      {"num_layers", c.num_layers},
      {"bi_gru", c.bi_gru},
      {"image_encoder", to_string(c.image_encoder)},
      {"image_l2norm", c.image_l2norm},
      {"text_l2norm", c.text_l2norm},
  };
  if (c.global_head > 0) json["global_head"] = c.global_head;
  if (c.global_pooling != GlobalPooling::Mean) json["global_pooling"] = to_string(c.global_pooling);
  return json;
}

ModelConfig model_config_from_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) throw Error(source + ": model config must be a JSON object");
  ModelConfig c;
  for (const auto& [key, value] : json.items()) {
    try {
      if (key == "mode")
        c.mode = parse_mode(typed<std::string>(value, key, source));
      else if (key == "iteration_steps")
        c.iteration_steps = typed<int>(value, key, source);
      else if (key == "lambda_softmax")
        c.lambda_softmax = typed<double>(value, key, source);
      else if (key == "raw_feature_norm")
        c.raw_feature_norm = parse_raw_feature_norm(typed<std::string>(value, key, source));
      else if (key == "imram_norm")
        c.imram_norm = typed<bool>(value, key, source);
      else if (key == "embed_size")
        c.embed_size = typed<std::int64_t>(value, key, source);
      else if (key == "word_dim")
        c.word_dim = typed<std::int64_t>(value, key, source);
      else if (key == "img_dim")
        c.img_dim = typed<std::int64_t>(value, key, source);
      else if (key == "vocab_size")
        c.vocab_size = typed<std::int64_t>(value, key, source);
      else if (key == "num_layers")
        c.num_layers = typed<int>(value, key, source);
      else if (key == "bi_gru")
        c.bi_gru = typed<bool>(value, key, source);
      else if (key == "image_encoder")
        c.image_encoder = parse_image_encoder(typed<std::string>(value, key, source));
      else if (key == "image_l2norm")
        c.image_l2norm = typed<bool>(value, key, source);
      else if (key == "text_l2norm")
        c.text_l2norm = typed<bool>(value, key, source);
      else if (key == "global_head")
        c.global_head = typed<std::int64_t>(value, key, source);
      else if (key == "global_pooling")
        c.global_pooling = parse_global_pooling(typed<std::string>(value, key, source));
      else
        throw Error(source + ": unknown config key \"" + key + "\"");
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.rfind(source, 0) == 0) throw;
      throw Error(source + ": \"" + key + "\": " + what);
    }
  }
  // Every key is written by save_model_config; one missing means a file edited or damaged by
  // hand, and a default in its place would score differently without a word.
  const auto complete = to_json(c);
  for (const auto& [key, value] : complete.items())
    if (!json.contains(key)) throw Error(source + ": missing config key \"" + key + "\"");
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  return model_config_from_json(read_json_file(path, "model config"), path);
}

void save_model_config(const ModelConfig& config, const std::string& path) {
  write_file_atomically(path, [&](std::ostream& out) { out << to_json(config).dump(2) << "\n"; });
}

ModelConfig model_config_from_reference_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) throw Error(source + ": reference config must be a JSON object");
  // Options of the authors' train.py that do not change what the model computes.
  static const std::set<std::string> kIgnored = {
      "margin",    "max_violation", "learning_rate", "lr_update",  "num_epochs",  "batch_size",
      "grad_clip", "workers",       "log_step",      "val_step",   "logger_name", "model_name",
      "resume",    "data_path",     "data_name",     "vocab_path", "crop_size",   "finetune",
      "cnn_type",  "use_restval",   "reset_train",   "agg_func",   "cross_attn",  "lambda_lse",
      "seed",      "gpuid",         "measure",       "use_abs",    "pos_emb"};
  ModelConfig c;
  for (const auto& [key, value] : json.items()) {
    if (key == "embed_size")
      c.embed_size = typed<std::int64_t>(value, key, source);
    else if (key == "word_dim")
      c.word_dim = typed<std::int64_t>(value, key, source);
    else if (key == "img_dim")
      c.img_dim = typed<std::int64_t>(value, key, source);
    else if (key == "vocab_size")
      c.vocab_size = typed<std::int64_t>(value, key, source);
    else if (key == "num_layers")
      c.num_layers = typed<int>(value, key, source);
    else if (key == "bi_gru")
      c.bi_gru = typed<bool>(value, key, source);
    else if (key == "raw_feature_norm")
      c.raw_feature_norm = parse_raw_feature_norm(typed<std::string>(value, key, source));
    else if (key == "lambda_softmax")
      c.lambda_softmax = typed<double>(value, key, source);
    else if (key == "iteration_step")
      c.iteration_steps = typed<int>(value, key, source);
    else if (key == "model_mode")
      c.mode = parse_mode(typed<std::string>(value, key, source));
    else if (key == "no_IMRAM_norm")
      c.imram_norm = !typed<bool>(value, key, source);
    else if (key == "no_imgnorm")
      c.image_l2norm = !typed<bool>(value, key, source);
    else if (key == "no_txtnorm")
      c.text_l2norm = !typed<bool>(value, key, source);
    else if (key == "precomp_enc_type")
      c.image_encoder = parse_image_encoder(typed<std::string>(value, key, source));
    else if (!kIgnored.count(key))
      throw Error(source + ": unknown config key \"" + key + "\"");
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
  return c;
}

nlohmann::ordered_json to_reference_json(const ModelConfig& c) {
  return nlohmann::ordered_json{
      {"bi_gru", c.bi_gru},
      {"embed_size", c.embed_size},
      {"img_dim", c.img_dim},
      {"iteration_step", c.iteration_steps},
      {"lambda_softmax", c.lambda_softmax},
      {"model_mode", to_string(c.mode) + "_IMRAM"},
      {"no_IMRAM_norm", !c.imram_norm},
      {"no_imgnorm", !c.image_l2norm},
      {"no_txtnorm", !c.text_l2norm},
      {"num_layers", c.num_layers},
      {"precomp_enc_type", to_string(c.image_encoder)},
      {"raw_feature_norm", to_string(c.raw_feature_norm)},
      {"vocab_size", c.vocab_size},
      {"word_dim", c.word_dim},
  };
}

}  // namespace imram
