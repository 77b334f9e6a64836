// Caption files are read as UTF-8 by one rule for every command: invalid bytes become U+FFFD.
#include <gtest/gtest.h>

#include <fstream>

#include "imram/data/captions.h"
#include "imram/data/vocabulary.h"
#include "imram/error.h"
#include "test_util.h"

namespace {

TEST(Captions, InvalidUtf8BytesAreReadAsReplacementCharacters) {
  imram::test::TempDir dir;
  std::ofstream(dir.file("caps.txt"), std::ios::binary)
      << "a red circle\r\ncaf\xe9 au lait\n\xf0\x9f\x90\x88 cat\ncut \xe2\x82\n";
  testing::internal::CaptureStderr();
  const auto captions = imram::read_captions(dir.file("caps.txt"));
  const auto warning = testing::internal::GetCapturedStderr();
  ASSERT_EQ(captions.size(), 4u);
  EXPECT_EQ(captions[0], "a red circle");
  EXPECT_EQ(captions[1], "caf\xef\xbf\xbd au lait");
  EXPECT_EQ(captions[2], "\xf0\x9f\x90\x88 cat");  // valid four-byte UTF-8 kept as is
  EXPECT_EQ(captions[3], "cut \xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(warning, "imram: warning: " + dir.file("caps.txt") +
                         ":2: 2 caption line(s) are not valid UTF-8; their invalid bytes are read as U+FFFD\n");
  // What the vocabulary saves (JSON) must be valid UTF-8: nlohmann refuses anything else.
  const auto vocabulary = imram::Vocabulary::build(captions, 1);
  EXPECT_NO_THROW(vocabulary.save(dir.file("vocab.json")));
}

TEST(Captions, Utf8ValidationRejectsOverlongSurrogateAndOutOfRangeForms) {
  for (const std::string bad : {"\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\x80"}) {
    bool replaced = false;
    const auto text = imram::valid_utf8("x" + bad + "y", &replaced);
    EXPECT_TRUE(replaced) << bad;
    EXPECT_EQ(text.find(bad), std::string::npos);
  }
  bool replaced = true;
  EXPECT_EQ(imram::valid_utf8("na\xc3\xafve \xe2\x80\x94 \xf4\x8f\xbf\xbf", &replaced),
            "na\xc3\xafve \xe2\x80\x94 \xf4\x8f\xbf\xbf");
  EXPECT_FALSE(replaced);
}

}  // namespace
