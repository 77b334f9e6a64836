// The NLTK-compatible tokenizer on any text, and the vocabulary built from it.
#include <string>

#include "imram/data/captions.h"
#include "imram/data/tokenizer.h"
#include "imram/data/vocabulary.h"
#include "imram/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)imram::tokenize(text);
    const auto valid = imram::valid_utf8(text);
    const auto tokens = imram::tokenize(valid);
    for (const auto& token : tokens)
      if (token.empty()) __builtin_trap();
    (void)imram::Vocabulary::build({valid}, 1);
  } catch (const imram::Error&) {
  }
  return 0;
}
