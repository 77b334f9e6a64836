#include "imram/data/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_paths.h"

namespace {

using Tokens = std::vector<std::string>;

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The reference token files hold NLTK's word_tokenize(caption.lower()) of every caption of
// the Flickr30K test and dev splits, one line each, tokens joined by one space.
TEST(Tokenizer, MatchesNltkOnEveryFlickr30kTestAndDevCaption) {
  const std::string dir = std::string(IMRAM_TESTDATA_DIR) + "/tokenizer/";
  std::size_t lines = 0;
  std::size_t mismatches = 0;
  std::ostringstream first_mismatches;
  for (const std::string split : {"test", "dev"}) {
    const auto captions = read_lines(dir + "f30k_" + split + "_caps.txt");
    const auto expected = read_lines(dir + "f30k_" + split + "_tokens.txt");
    ASSERT_EQ(captions.size(), expected.size()) << split;
    for (std::size_t i = 0; i < captions.size(); ++i) {
      const std::string got = imram::join_tokens(imram::tokenize(captions[i]));
      if (got == expected[i]) continue;
      if (++mismatches <= 5) {
        first_mismatches << "\n  f30k_" << split << "_caps.txt:" << i + 1 << ": " << captions[i]
                         << "\n    expected: " << expected[i] << "\n    got:      " << got;
      }
    }
    lines += captions.size();
  }
  EXPECT_EQ(lines, 10070u);
  EXPECT_EQ(mismatches, 0u) << mismatches << " of " << lines
                            << " captions differ from NLTK; first ones:" << first_mismatches.str();
}

TEST(Tokenizer, SplitsNegationLikeTreebank) {
  EXPECT_EQ(imram::tokenize("Don't stop"), (Tokens{"do", "n't", "stop"}));
  EXPECT_EQ(imram::tokenize("I can't swim"), (Tokens{"i", "ca", "n't", "swim"}));
}

TEST(Tokenizer, SplitsContractionsLikeMacIntyre) {
  EXPECT_EQ(imram::tokenize("He cannot swim, he's gonna sink"),
            (Tokens{"he", "can", "not", "swim", ",", "he", "'s", "gon", "na", "sink"}));
  EXPECT_EQ(imram::tokenize("'tis"), (Tokens{"'t", "is"}));
}

TEST(Tokenizer, SplitsCliticsOffTheirWords) {
  EXPECT_EQ(imram::tokenize("A man's hat and the girls' shoes"),
            (Tokens{"a", "man", "'s", "hat", "and", "the", "girls", "'", "shoes"}));
  EXPECT_EQ(imram::tokenize("I'd go, you'll see, we're here, they've left"),
            (Tokens{"i", "'d", "go", ",", "you", "'ll", "see", ",", "we", "'re", "here", ",", "they", "'ve", "left"}));
}

TEST(Tokenizer, ConvertsDoubleQuotesToTreebankQuotes) {
  EXPECT_EQ(imram::tokenize("\"Stop\" he said"), (Tokens{"``", "stop", "''", "he", "said"}));
  // After a space a closing quote counts as an opening one, as in NLTK.
  EXPECT_EQ(imram::tokenize("a man reads \" lovely \" on a sign"),
            (Tokens{"a", "man", "reads", "``", "lovely", "``", "on", "a", "sign"}));
}

TEST(Tokenizer, SplitsOnlyTheFinalPeriodOfASentence) {
  EXPECT_EQ(imram::tokenize("a man in the u.s. army ."), (Tokens{"a", "man", "in", "the", "u.s.", "army", "."}));
  EXPECT_EQ(imram::tokenize("A dog runs."), (Tokens{"a", "dog", "runs", "."}));
}

TEST(Tokenizer, SplitsSentencesLikePunkt) {
  EXPECT_EQ(imram::tokenize("A man. A dog."), (Tokens{"a", "man", ".", "a", "dog", "."}));
  EXPECT_EQ(imram::tokenize("Is it a dog? Yes."), (Tokens{"is", "it", "a", "dog", "?", "yes", "."}));
  // The closing quote after a sentence's period stays in that sentence.
  EXPECT_EQ(imram::tokenize("a sign says \"stop.\" a man walks"),
            (Tokens{"a", "sign", "says", "``", "stop", ".", "''", "a", "man", "walks"}));
}

TEST(Tokenizer, KeepsAbbreviationsInitialsAndNumbersBeforeLowerCaseWords) {
  EXPECT_EQ(
      imram::tokenize("A man on St. Patrick's day with J. Smith at E.S.E. Electronics"),
      (Tokens{"a", "man", "on", "st.", "patrick", "'s", "day", "with", "j.", "smith", "at", "e.s.e.", "electronics"}));
  EXPECT_EQ(imram::tokenize("the number 5. a man watches"), (Tokens{"the", "number", "5.", "a", "man", "watches"}));
  // Before a token that is not a lower-case word, Punkt ends the sentence after an initial.
  EXPECT_EQ(imram::tokenize("the letter b. 52 people"), (Tokens{"the", "letter", "b", ".", "52", "people"}));
}

TEST(Tokenizer, SeparatesCommasColonsAndSymbolsButNotInsideNumbers) {
  EXPECT_EQ(imram::tokenize("red, white and blue cost $37,000 at 10:30 today:"),
            (Tokens{"red", ",", "white", "and", "blue", "cost", "$", "37,000", "at", "10:30", "today", ":"}));
}

TEST(Tokenizer, PadsParenthesesAndBrackets) {
  EXPECT_EQ(imram::tokenize("a man (in red) walks [fast] {now} <here>"),
            (Tokens{"a", "man", "(", "in", "red", ")", "walks", "[", "fast", "]", "{", "now", "}", "<", "here", ">"}));
}

TEST(Tokenizer, SeparatesEllipsesAndDoubleDashes) {
  EXPECT_EQ(imram::tokenize("wait... what -- no"), (Tokens{"wait", "...", "what", "--", "no"}));
  EXPECT_EQ(imram::tokenize("wow!! a dog"), (Tokens{"wow", "!", "!", "a", "dog"}));
}

TEST(Tokenizer, LowerCasesAsciiLetters) { EXPECT_EQ(imram::tokenize("A DOG"), (Tokens{"a", "dog"})); }

TEST(Tokenizer, EmptyAndBlankCaptionsHaveNoTokens) {
  EXPECT_TRUE(imram::tokenize("").empty());
  EXPECT_TRUE(imram::tokenize("   \t ").empty());
}

TEST(Tokenizer, PassesNonAsciiThroughAndPadsUnicodeQuotes) {
  EXPECT_EQ(imram::tokenize("naïve CAFÉ owner’s dog «big»"),
            (Tokens{"naïve", "cafÉ", "owner", "’", "s", "dog", "«", "big", "»"}));
  // A no-break space separates tokens like any other space.
  EXPECT_EQ(imram::tokenize("a\xC2\xA0"
                            "dog"),
            (Tokens{"a", "dog"}));
}

TEST(Tokenizer, AcceptsInvalidUtf8) {
  const std::string broken = "a \xE2\x80 dog\xFF. \xC3";
  Tokens tokens;
  ASSERT_NO_THROW(tokens = imram::tokenize(broken));
  EXPECT_EQ(imram::join_tokens(tokens), "a \xE2\x80 dog\xFF . \xC3");
}

TEST(Tokenizer, JoinsTokensWithSingleSpaces) {
  EXPECT_EQ(imram::join_tokens({"a", "dog", "."}), "a dog .");
  EXPECT_EQ(imram::join_tokens({}), "");
}

}  // namespace
