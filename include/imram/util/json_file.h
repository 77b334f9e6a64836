#pragma once
// Reading a JSON file with errors that name it.
#include <nlohmann/json.hpp>
#include <string>

namespace imram {

// Throws imram::Error "<path>: cannot open <what>" or "<path>: not valid JSON (...)".
nlohmann::json read_json_file(const std::string& path, const std::string& what = "file");

}  // namespace imram
