#include <filesystem>
#include <iostream>

#include "command.h"
#include "imram/model/checkpoint.h"
#include "imram/model/model_dir.h"

void imram::cli::add_import_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string source, vocab, out;
  };
  auto options = std::make_shared<Options>();
  auto* sub = root.add_subcommand(
      "import", "convert the authors' checkpoint (.pth.tar) or a reference weight directory into a model directory");
  sub->add_option("SOURCE", options->source,
                  "a checkpoint written by the authors' train.py (either torch.save format), or a directory "
                  "with config.json (the authors' option names) + weights/<name>.npy")
      ->required();
  sub->add_option("--vocab", options->vocab, "the vocabulary JSON the weights were trained with");
  sub->add_option("--out", options->out, "model directory to write")->required();
  sub->callback([&invocation, options] {
    invocation.brief = true;
    invocation.run = [options] {
      imram::Model model;
      if (std::filesystem::is_directory(options->source)) {
        model = imram::import_reference_model(options->source, options->vocab);
      } else {
        auto imported = imram::import_checkpoint(options->source, options->vocab);
        std::cout << options->source << ": " << imported.format << " torch.save checkpoint"
                  << (imported.stripped_module_prefix ? ", 'module.' prefix stripped" : "");
        for (const char* key : {"epoch", "best_rsum"})
          if (imported.model.metadata.contains(key))
            std::cout << ", " << key << " " << imported.model.metadata[key].dump();
        std::cout << "\n";
        if (!imported.ignored.empty()) {
          std::cout << "ignored:";
          for (const auto& name : imported.ignored) std::cout << " " << name;
          std::cout << "\n";
        }
        model = std::move(imported.model);
      }
      imram::save_model(options->out, model);
      std::cout << "imported " << options->source << " (" << imram::to_string(model.config().mode)
                << "-IMRAM, K=" << model.config().iteration_steps << ", d=" << model.config().embed_size << ") into "
                << options->out << (model.vocabulary ? "" : " without a vocabulary (score caption ids only)") << "\n";
      return 0;
    };
  });
}

void imram::cli::add_export_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string model, out;
  };
  auto options = std::make_shared<Options>();
  auto* sub = root.add_subcommand("export", "write a model directory back in the reference layout");
  sub->add_option("MODEL", options->model, "model directory")->required();
  sub->add_option("--out", options->out, "reference weight directory to write")->required();
  sub->callback([&invocation, options] {
    invocation.brief = true;
    invocation.run = [options] {
      imram::export_reference_model(imram::load_model(options->model), options->out);
      std::cout << "exported " << options->model << " to " << options->out << "\n";
      return 0;
    };
  });
}
