#include "imram/data/captions.h"

#include <fstream>

#include "imram/error.h"

namespace imram {

std::vector<std::string> read_captions(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open caption file");
  std::vector<std::string> captions;
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos)
      throw Error(path + ":" + std::to_string(number) + ": empty caption line");
    captions.push_back(std::move(line));
  }
  if (captions.empty()) throw Error(path + ": no captions in file");
  return captions;
}

}  // namespace imram
