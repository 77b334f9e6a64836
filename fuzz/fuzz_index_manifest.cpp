// An index directory's manifest.json: the counts, the files' entries, and their agreement.
#include <filesystem>
#include <fstream>

#include "fuzz_input.h"
#include "imram/error.h"
#include "imram/search/index_manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  imram::fuzz::write_input("manifest.json", data, size);
  imram::Manifest manifest;
  try {
    manifest = imram::read_manifest(imram::fuzz::scratch_dir());
  } catch (const imram::Error&) {
    return 0;
  }
  // What was accepted is written back (as a commit does) and read as the same manifest.
  std::ofstream(imram::fuzz::scratch_dir() + "/manifest.json", std::ios::trunc)
      << imram::manifest_json(manifest).dump();
  const auto again = imram::read_manifest(imram::fuzz::scratch_dir());
  if (imram::manifest_json(again) != imram::manifest_json(manifest)) __builtin_trap();
  return 0;
}
