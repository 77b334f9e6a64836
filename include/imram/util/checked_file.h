#pragma once
// Files whose content is verified when read back: a header with the length and a checksum of
// the payload. For caches that are trusted to stand for a computation (the encoded gallery):
// a cache cut short or overwritten must be rebuilt, never silently used.
#include <cstdint>
#include <optional>
#include <string>

namespace imram {

// 64-bit checksum over the bytes (word-wise FNV-1a variant); not cryptographic.
std::uint64_t checksum64(const std::string& bytes);

// Writes `payload` behind its header, atomically (unique temporary name + rename).
void write_checked_file(const std::string& path, const std::string& payload);

// The payload, or nullopt when the file is missing, of another format, truncated, too long or
// fails its checksum; `problem` then says which (empty for a missing file).
std::optional<std::string> read_checked_file(const std::string& path, std::string* problem = nullptr);

}  // namespace imram
