#pragma once
// Files and directories that appear complete or not at all: content goes to a temporary
// sibling first and is renamed over the target only once fully written, so a killed run never
// leaves a half-written checkpoint or destroys the last good one.
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace imram {

// Writes `path` through a temporary file in the same directory, then renames it.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

// Both writers first remove `<path>.tmp.<pid>` siblings whose process has died (kill -9 mid-save),
// as does this, for writers that build their own temporary sibling.
void remove_abandoned_temporaries(const std::string& path);

// Fills a fresh temporary directory next to `dir` with `fill(tmp_dir)`, then swaps it in
// place of `dir` (the previous content is removed only after the new one is in place).
void write_directory_atomically(const std::string& dir, const std::function<void(const std::string& tmp_dir)>& fill);
// The same in two steps, for a directory written across calls (an index that streams in):
// an empty temporary sibling of `dir` (abandoned ones removed first), then the swap, which
// removes the temporary whether or not it succeeds.
std::string fresh_temporary_directory(const std::string& dir);
void move_directory_into_place(const std::string& tmp, const std::string& dir);

// Throws unless `dir` is absent, an empty directory, or a directory holding every entry of
// `signature` (e.g. config.json and weights of a model directory): a command replaces only what
// it recognises as its own output, never a user's other files.
void require_own_directory(const std::string& dir, const std::string& kind, const std::vector<std::string>& signature);

// Creates `dir` if needed and checks that a file can be written in it, so that a long command
// (training) fails at its start, not at its first save, on a read-only or unwritable directory.
void require_writable_directory(const std::string& dir);

// Removes `path` and everything below it, if it exists; never throws. Not
// std::filesystem::remove_all: pip's LibTorch 2.11 exports its own copy of that symbol, which
// the dynamic linker binds first and which crashes (seen on the GPU machine).
void remove_tree(const std::string& path);

}  // namespace imram
