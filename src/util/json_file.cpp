#include "imram/util/json_file.h"

#include <fstream>

#include "imram/error.h"

namespace imram {

nlohmann::json read_json_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open " + what);
  try {
    nlohmann::json json;
    in >> json;
    return json;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
}

}  // namespace imram
