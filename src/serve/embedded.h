#pragma once
// Made at build time from src/serve/page/ by cmake/embed_assets.cmake.
#include <string>
#include <utility>
#include <vector>

namespace imram::embedded {

// (file name, contents) of every file of src/serve/page/.
const std::vector<std::pair<std::string, std::string>>& page_files();
const char* version();  // the project's version, from CMakeLists.txt

}  // namespace imram::embedded
