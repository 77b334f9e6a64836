// vocab.json in the authors' format (word2idx, idx2word, idx).
#include "fuzz_input.h"
#include "imram/data/vocabulary.h"
#include "imram/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = imram::fuzz::write_input("vocab.json", data, size);
  try {
    const auto vocabulary = imram::Vocabulary::from_file(path);
    for (std::int64_t id = 0; id < vocabulary.size(); ++id)
      if (vocabulary.id(vocabulary.word(id)) != id) __builtin_trap();
    (void)vocabulary.encode("a red circle");
  } catch (const imram::Error&) {
  }
  return 0;
}
