// {split}_images.jsonl and an index's gallery_images.jsonl: one ImageInfo a line (description,
// twin, picture, drawing, region boxes). What is accepted must survive writing and reading back.
#include <algorithm>
#include <cstdlib>

#include "fuzz_input.h"
#include "imram/data/image_info.h"
#include "imram/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  imram::fuzz::write_input("fuzz_images.jsonl", data, size);
  const auto lines = std::int64_t(std::count(data, data + size, std::uint8_t('\n')));
  try {
    for (const auto& info : imram::dataset_image_info(imram::fuzz::scratch_dir(), "fuzz", lines)) {
      const auto again = imram::parse_image_info(imram::image_info_json(info), "round trip", lines);
      if (again.description != info.description || again.twin != info.twin || again.picture != info.picture ||
          again.drawing != info.drawing || again.picture_stamp != info.picture_stamp || again.regions != info.regions)
        std::abort();
    }
  } catch (const imram::Error&) {
  }
  return 0;
}
