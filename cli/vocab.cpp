#include <iostream>

#include "command.h"
#include "imram/data/captions.h"
#include "imram/data/vocabulary.h"
#include "imram/error.h"

void imram::cli::add_vocab_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string data;
    std::string splits = "train,dev";
    int threshold = imram::Vocabulary::kDefaultThreshold;
    std::string out;
  };
  auto options = std::make_shared<Options>();
  auto* vocab = root.add_subcommand("vocab", "vocabulary tools");
  vocab->require_subcommand(1);
  auto* build = vocab->add_subcommand("build", "build a vocabulary from caption files as the authors do");
  build->add_option("--data", options->data, "dataset directory holding {split}_caps.txt")->required();
  build->add_option("--splits", options->splits, "comma-separated splits")
      ->check(imram::cli::kSplitNames)
      ->capture_default_str();
  build->add_option("--threshold", options->threshold, "keep words seen at least this often")->capture_default_str();
  build->add_option("--out", options->out, "vocabulary JSON to write")->required();
  build->callback([&invocation, options] {
    invocation.brief = true;
    invocation.run = [options] {
      std::vector<std::string> captions;
      std::stringstream splits(options->splits);
      std::string split;
      while (std::getline(splits, split, ',')) {
        if (split.empty()) continue;
        auto part = imram::read_captions(options->data + "/" + split + "_caps.txt");
        captions.insert(captions.end(), part.begin(), part.end());
      }
      if (captions.empty()) throw imram::Error("--splits: no split given");
      const auto vocabulary = imram::Vocabulary::build(captions, options->threshold);
      vocabulary.save(options->out);
      std::cout << "vocabulary of " << vocabulary.size() << " words from " << captions.size() << " captions written to "
                << options->out << "\n";
      return 0;
    };
  });
}
