// config.json of a model directory and of the authors' reference directories.
#include "fuzz_input.h"
#include "imram/error.h"
#include "imram/model/config.h"
#include "imram/util/json_file.h"

#include <nlohmann/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = imram::fuzz::write_input("config.json", data, size);
  try {
    const auto config = imram::load_model_config(path);
    // What loads must save and load again to the same options.
    const auto again = imram::model_config_from_json(nlohmann::json::parse(imram::to_json(config).dump()), path);
    if (imram::to_json(again) != imram::to_json(config)) __builtin_trap();
  } catch (const imram::Error&) {
  }
  try {
    imram::model_config_from_reference_json(imram::read_json_file(path), path);
  } catch (const imram::Error&) {
  }
  return 0;
}
