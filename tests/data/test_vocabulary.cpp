#include <gtest/gtest.h>

#include <fstream>

#include "imram/data/captions.h"
#include "imram/data/tokenizer.h"
#include "imram/data/vocabulary.h"
#include "imram/error.h"
#include "test_util.h"

namespace {

using imram::Vocabulary;

TEST(Vocabulary, LoadsTheAuthorsFlickrVocabulary) {
  const auto v = Vocabulary::from_file(imram::test::testdata("vocab/f30k_precomp_vocab.json"));
  EXPECT_EQ(v.size(), 8481);
  EXPECT_EQ(v.word(0), "<pad>");
  EXPECT_EQ(v.word(3), "<unk>");
  EXPECT_EQ(v.id("raining"), 4);
  EXPECT_EQ(v.id("yellow"), 7);
  EXPECT_EQ(v.id("no-such-word-xyz"), Vocabulary::kUnknown);
  EXPECT_EQ(Vocabulary::from_file(imram::test::testdata("vocab/coco_precomp_vocab.json")).size(), 11353);
}

TEST(Vocabulary, AuthorsVocabularyCoversFlickrTestCaptionsWithUnder1Point5PercentUnknown) {
  const auto v = Vocabulary::from_file(imram::test::testdata("vocab/f30k_precomp_vocab.json"));
  const auto captions = imram::read_captions(imram::test::testdata("captions/f30k_test_caps.txt"));
  ASSERT_EQ(captions.size(), 5000u);
  std::size_t unknown = 0, words = 0;
  for (const auto& caption : captions) {
    const auto ids = v.encode(caption);
    ASSERT_EQ(ids.front(), Vocabulary::kStart);
    ASSERT_EQ(ids.back(), Vocabulary::kEnd);
    for (std::size_t i = 1; i + 1 < ids.size(); ++i) {
      ++words;
      unknown += ids[i] == Vocabulary::kUnknown;
    }
  }
  const double rate = double(unknown) / double(words);
  EXPECT_LT(rate, 0.015) << unknown << " of " << words;
  EXPECT_GT(rate, 0.0);  // some test words are genuinely absent from the training vocabulary
}

TEST(Vocabulary, BuildKeepsFrequentWordsInOrderOfFirstAppearance) {
  const std::vector<std::string> captions = {"b a c", "a b", "c b a d", "a b c", "b c"};
  const auto v = Vocabulary::build(captions, 4);
  ASSERT_EQ(v.size(), 4 + 3);  // a: 4, b: 5, c: 4, d: 1
  EXPECT_EQ(v.word(4), "b");
  EXPECT_EQ(v.word(5), "a");
  EXPECT_EQ(v.word(6), "c");
  EXPECT_EQ(v.id("d"), Vocabulary::kUnknown);
  EXPECT_EQ(Vocabulary::build(captions, 1).size(), 8);
  EXPECT_THROW(Vocabulary::build(captions, 0), imram::Error);
}

TEST(Vocabulary, EncodesWithStartEndAndUnknown) {
  const auto v = Vocabulary::build({"a dog runs", "a dog runs"}, 2);
  EXPECT_EQ(v.encode("A dog flies."), (std::vector<std::int64_t>{1, 4, 5, 3, 3, 2}));
}

TEST(Vocabulary, SavesAndReloadsIdentically) {
  imram::test::TempDir dir;
  const auto v = Vocabulary::from_file(imram::test::testdata("vocab/f30k_precomp_vocab.json"));
  v.save(dir.file("v.json"));
  const auto w = Vocabulary::from_file(dir.file("v.json"));
  ASSERT_EQ(w.size(), v.size());
  for (std::int64_t i = 0; i < v.size(); ++i) ASSERT_EQ(w.word(i), v.word(i));
}

TEST(Vocabulary, RejectsMalformedFilesNamingThem) {
  imram::test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"notjson.json", "{"},
      {"noidx.json", "{\"word2idx\": {}}"},
      {"gap.json", R"({"idx2word": {"0": "<pad>", "1": "<start>", "2": "<end>", "3": "<unk>", "5": "x"}})"},
      {"specials.json", R"({"idx2word": {"0": "<start>", "1": "<pad>", "2": "<end>", "3": "<unk>"}})"},
      {"dup.json", R"({"idx2word": {"0": "<pad>", "1": "<start>", "2": "<end>", "3": "<unk>", "4": "x", "5": "x"}})"},
      {"disagree.json",
       R"({"idx2word": {"0": "<pad>", "1": "<start>", "2": "<end>", "3": "<unk>", "4": "x"}, "word2idx": {"x": 7}})"},
  };
  for (const auto& [name, text] : bad) {
    std::ofstream(dir.file(name)) << text;
    try {
      Vocabulary::from_file(dir.file(name));
      ADD_FAILURE() << name << " accepted";
    } catch (const imram::Error& e) {
      EXPECT_NE(std::string(e.what()).find(dir.file(name)), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(Vocabulary().word(4), imram::Error);
}

}  // namespace
