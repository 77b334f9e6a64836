#pragma once
// Caption files: UTF-8, one caption per line (the SCAN/IMRAM `{split}_caps.txt`).
#include <string>
#include <vector>

namespace imram {

// Reads every line; a trailing "\r" is dropped. Throws on an empty line, naming the line number,
// and on a file without any caption. Text must be UTF-8: each invalid byte is read as U+FFFD
// (the replacement character), said once per file on stderr with the first such line, so that
// every command treats such a file the same way.
std::vector<std::string> read_captions(const std::string& path);

// `text` with every byte that is not part of a valid UTF-8 sequence replaced by U+FFFD;
// `replaced` says whether any was.
std::string valid_utf8(const std::string& text, bool* replaced = nullptr);

}  // namespace imram
