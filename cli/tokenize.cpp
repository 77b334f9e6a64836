// imram tokenize: shows how captions are split into vocabulary words, one output line per
// input line, so a caption file can be checked against NLTK's tokens with diff.
#include <iostream>
#include <string>

#include "command.h"
#include "imram/data/captions.h"
#include "imram/data/tokenizer.h"
#include "imram/error.h"

void imram::cli::add_tokenize_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  auto* sub = root.add_subcommand("tokenize", "print NLTK-compatible tokens of each caption read on stdin");
  sub->callback([&invocation] {
    invocation.brief = true;
    invocation.run = [] {
      std::string caption;
      while (std::getline(std::cin, caption)) {
        std::cout << imram::join_tokens(imram::tokenize(imram::valid_utf8(caption))) << '\n';
      }
      if (!std::cout.flush()) throw imram::Error("tokenize: cannot write to standard output");
      return 0;
    };
  });
}
