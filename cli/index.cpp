#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/search/index_dir.h"

namespace {

void print_summary(const std::string& verb, const imram::GalleryIndex& index) {
  std::cout << verb << " " << index.dir() << ": " << index.num_images() << " images, " << index.num_captions()
            << " captions, store " << index.store_dtype() << ", "
            << (index.has_shortlist() ? "FAISS " + index.faiss_factory() + " shortlist"
                                      : std::string("no shortlist (the model has no global head)"))
            << "\n";
}

}  // namespace

IMRAM_COMMAND {
  auto* index = root.add_subcommand("index", "two-stage search indexes: build, add, verify");
  index->require_subcommand(1);

  struct BuildOptions {
    std::string model, data, split = "test", out, faiss, store = "float16";
    bool quiet = false;
  };
  auto b = std::make_shared<BuildOptions>();
  auto* build = index->add_subcommand("build", "encode a split into a new index directory");
  build->add_option("--model", b->model, "model directory (with a global head for a shortlist)")->required();
  build->add_option("--data", b->data, "dataset directory")->required();
  build->add_option("--split", b->split, "split to index")->capture_default_str();
  build->add_option("--out", b->out, "index directory to write (replaced only if it is an index)")->required();
  build->add_option("--faiss", b->faiss, "FAISS factory string (default: Flat up to 20,000 images, else IVF<n>,Flat)");
  build->add_option("--store", b->store, "dtype of the stored encoded items")
      ->check(CLI::IsMember({"float16", "float32"}))->capture_default_str();
  build->add_flag("--quiet", b->quiet, "no progress output");
  build->callback([&invocation, b] {
    invocation.run = [b, device = invocation.globals.device] {
      const auto split = imram::PrecompSplit::open(b->data, b->split);
      imram::IndexOptions options;
      options.faiss_factory = b->faiss;
      options.store = imram::parse_store_dtype(b->store);
      options.show_progress = !b->quiet;
      options.device = device;
      auto writer = imram::IndexWriter::create(b->out, b->model, options);
      writer.add_split(split);
      writer.commit();
      print_summary("built", *imram::GalleryIndex::open(b->out));
      return 0;
    };
  });

  struct AddOptions {
    std::string index, data, split, model;
    bool quiet = false;
  };
  auto a = std::make_shared<AddOptions>();
  auto* add = index->add_subcommand("add", "append a split's images and captions to an index");
  add->add_option("INDEX", a->index, "index directory")->required();
  add->add_option("--data", a->data, "dataset directory")->required();
  add->add_option("--split", a->split, "split to add")->required();
  add->add_option("--model", a->model, "refuse unless the index was built with this model");
  add->add_flag("--quiet", a->quiet, "no progress output");
  add->callback([&invocation, a] {
    invocation.run = [a, device = invocation.globals.device] {
      if (!a->model.empty()) imram::GalleryIndex::open(a->index, imram::parse_device(device), a->model);
      const auto split = imram::PrecompSplit::open(a->data, a->split);
      auto writer = imram::IndexWriter::append(a->index, !a->quiet, device);
      writer.add_split(split);
      writer.commit();
      print_summary("added to", *imram::GalleryIndex::open(a->index));
      return 0;
    };
  });

  auto verify_dir = std::make_shared<std::string>();
  auto* verify = index->add_subcommand("verify", "check every stored file against the manifest's checksums");
  verify->add_option("INDEX", *verify_dir, "index directory")->required();
  verify->callback([&invocation, verify_dir] {
    invocation.run = [verify_dir] {
      const auto opened = imram::GalleryIndex::open(*verify_dir);
      opened->verify();
      print_summary("verified", *opened);
      return 0;
    };
  });
}
