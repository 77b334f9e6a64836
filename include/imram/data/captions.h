#pragma once
// Caption files: UTF-8, one caption per line (the SCAN/IMRAM `{split}_caps.txt`).
#include <string>
#include <vector>

namespace imram {

// Reads every line; a trailing "\r" is dropped. Throws on an empty line, naming the line number,
// and on a file without any caption.
std::vector<std::string> read_captions(const std::string& path);

}  // namespace imram
