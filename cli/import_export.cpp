#include <iostream>

#include "command.h"
#include "imram/model/model_dir.h"

IMRAM_COMMAND {
  struct Options {
    std::string reference_dir, vocab, out;
  };
  auto options = std::make_shared<Options>();
  auto* sub = root.add_subcommand("import", "convert a reference weight directory (authors' PyTorch export) into a model directory");
  sub->add_option("REF_DIR", options->reference_dir, "config.json with the authors' option names + weights/<name>.npy")
      ->required();
  sub->add_option("--vocab", options->vocab, "the vocabulary JSON the weights were trained with");
  sub->add_option("--out", options->out, "model directory to write")->required();
  sub->callback([&invocation, options] {
    invocation.run = [options] {
      const auto model = imram::import_reference_model(options->reference_dir, options->vocab);
      imram::save_model(options->out, model);
      std::cout << "imported " << options->reference_dir << " (" << imram::to_string(model.config().mode)
                << "-IMRAM, K=" << model.config().iteration_steps << ", d=" << model.config().embed_size
                << ") into " << options->out
                << (model.vocabulary ? "" : " without a vocabulary (score caption ids only)") << "\n";
      return 0;
    };
  });
}

IMRAM_COMMAND {
  struct Options {
    std::string model, out;
  };
  auto options = std::make_shared<Options>();
  auto* sub = root.add_subcommand("export", "write a model directory back in the reference layout");
  sub->add_option("MODEL", options->model, "model directory")->required();
  sub->add_option("--out", options->out, "reference weight directory to write")->required();
  sub->callback([&invocation, options] {
    invocation.run = [options] {
      imram::export_reference_model(imram::load_model(options->model), options->out);
      std::cout << "exported " << options->model << " to " << options->out << "\n";
      return 0;
    };
  });
}
