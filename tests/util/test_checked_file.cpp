// Checked files (the gallery cache): any damage is detected, never handed out as content.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "imram/util/checked_file.h"
#include "test_util.h"

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(CheckedFile, RoundTripsAndDetectsEveryKindOfDamage) {
  imram::test::TempDir dir;
  const auto path = dir.file("cache.bin");
  std::string payload(100000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7919 % 251);
  imram::write_checked_file(path, payload);
  EXPECT_EQ(imram::read_checked_file(path), payload);
  const auto good = read_bytes(path);

  std::string problem;
  EXPECT_FALSE(imram::read_checked_file(dir.file("missing"), &problem));
  EXPECT_EQ(problem, "");
  const auto damaged = [&](std::string bytes, const std::string& expected_problem) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    std::string why;
    EXPECT_FALSE(imram::read_checked_file(path, &why)) << expected_problem;
    EXPECT_NE(why.find(expected_problem), std::string::npos) << why;
  };
  auto zeroed = good;
  std::fill(zeroed.begin() + 5000, zeroed.begin() + 9096, '\0');
  damaged(zeroed, "checksum");
  auto flipped = good;
  flipped[good.size() - 1] ^= 1;
  damaged(flipped, "checksum");
  damaged(good.substr(0, good.size() - 1), "truncated");
  damaged(good + "x", "length");
  damaged("PK\x03\x04 a torch zip", "not a checked file");
  damaged("", "not a checked file");
  // Every written file leaves no temporary beside it.
  imram::write_checked_file(path, "again");
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1);
}

}  // namespace
