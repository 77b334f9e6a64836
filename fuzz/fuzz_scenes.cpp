// {split}_scenes.jsonl of the synthetic datasets: one JSON scene a line, twins, swaps; every
// scene accepted can be described and drawn.
#include "fuzz_input.h"
#include "imram/data/scene.h"
#include "imram/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  imram::fuzz::write_input("fuzz_scenes.jsonl", data, size);
  try {
    for (const auto& scene : imram::read_scenes(imram::fuzz::scratch_dir(), "fuzz"))
      (void)imram::image_info_json(imram::image_info(scene));
  } catch (const imram::Error&) {
  }
  return 0;
}
