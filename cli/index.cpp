#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/search/index_dir.h"
#include "imram/search/index_pictures.h"
#include "imram/train/distributed.h"
#include "imram/train/launch.h"
#include "imram/util/log.h"
#include "nproc_option.h"
#include "picture_options.h"

namespace {

void print_summary(const std::string& verb, const imram::GalleryIndex& index) {
  std::cout << verb << " " << index.dir() << ": " << index.num_images() << " images, " << index.num_captions()
            << " captions, store " << index.store_dtype()
            << (index.store()->keeps_memory_halves() ? " with memory halves" : "")
            << (index.has_codes(imram::GallerySide::Images)
                    ? (index.store()->keeps_memory_halves() ? " and codes" : " with codes")
                    : "")
            << (index.store()->exact() ? "" : ", no exact store (fragments decoded from residuals: scores approximate)")
            << ", "
            << (index.has_shortlist() ? "FAISS " + index.faiss_factory() + " shortlist"
                                      : std::string("no shortlist (the model has no global head)"));
  if (!index.shards().empty()) std::cout << ", in " << index.shards().size() << " shards";
  std::cout << "\n";
}

}  // namespace

void imram::cli::add_index_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  auto* index = root.add_subcommand("index", "two-stage search indexes: build, add, verify");
  index->require_subcommand(1);

  struct BuildOptions {
    std::string model, data, split = "test", out, faiss, store = "float16";
    bool memory_halves = false, codes = true, quiet = false;
    std::int64_t codebook = 0, batch_size = 128;
    int residual_bits = imram::kAutoResidualBits;
    bool exact_store = true;
    int shards = 1;
    imram::cli::NprocOptions world;
  };
  auto b = std::make_shared<BuildOptions>();
  auto* build = index->add_subcommand("build", "encode a split into a new index directory");
  build->add_option("--model", b->model, "model directory (with a global head for a shortlist)")->required();
  build->add_option("--data", b->data, "dataset directory")->required();
  build->add_option("--split", b->split, "split to index")->check(imram::cli::kSplitName)->capture_default_str();
  build->add_option("--out", b->out, "index directory to write (replaced only if it is an index)")->required();
  build->add_option(
      "--faiss", b->faiss,
      "FAISS factory string (default: Flat while images x global dimensions <= 2^24, else IVF<n>,SQfp16)");
  build->add_option("--store", b->store, "dtype of the stored encoded items")
      ->check(CLI::IsMember({"float16", "float32"}))
      ->capture_default_str();
  build->add_flag("--memory-halves", b->memory_halves,
                  "also store each item's products with the memory weights: faster re-ranking for 2d floats more per "
                  "region and word and direction (docs/index.md)");
  build->add_flag("!--no-codes", b->codes,
                  "keep no codes of the fragments: the cascade's first step then reads every candidate from the store "
                  "(docs/index.md#codes)");
  build
      ->add_option("--codebook", b->codebook,
                   "centroids of each side's codebook (0: auto, about 8 per square root of the fragments, 16 to 8,192)")
      ->check(imram::cli::kNonNegative)
      ->capture_default_str();
  build
      ->add_option("--residual-bits", b->residual_bits,
                   "also keep each fragment's residual from its centroid in B bits per value, 0 for none (default: 2 "
                   "with --no-exact-store, else 0; docs/index.md#residuals)")
      ->check(CLI::IsMember({0, 1, 2, 4, 8}));
  build->add_flag("!--no-exact-store", b->exact_store,
                  "keep the fragments only as codes and residuals: a fraction of the store's size, every score "
                  "approximate (docs/index.md#residuals)");
  build
      ->add_option("--batch-size", b->batch_size,
                   "images encoded at once, captions 4x as many (a smaller batch bounds a GPU's memory)")
      ->check(imram::cli::kAtLeastOne)
      ->capture_default_str();
  build
      ->add_option("--shards", b->shards,
                   "hold the index as S shards, each an index of a contiguous range of the images and their captions "
                   "(docs/index.md#shards)")
      ->check(imram::cli::kAtLeastOne)
      ->capture_default_str();
  imram::cli::add_nproc_options(build, b->world, "each encodes and codes its share; rank 0 writes the index");
  build->add_flag("--quiet", b->quiet, "no progress output");
  build->callback([&invocation, b] {
    imram::cli::check_nproc(b->world);
    invocation.run = [b, device = invocation.globals.device, threads = invocation.globals.threads] {
      if (b->world.nproc > 1) return imram::run_local_world(b->world.nproc, imram::command_line_without_nproc());
      // A rank of a world (--nproc, torchrun or srun) encodes its blocks; rank 0 writes.
      auto joined = imram::join_world(imram::parse_device(device), /*threads_given=*/threads > 0);
      imram::WorldShare share;
      if (joined.communicator) share = imram::share_of_world(*joined.communicator);
      const auto split = imram::PrecompSplit::open(b->data, b->split);
      imram::IndexOptions options;
      options.faiss_factory = b->faiss;
      options.store = imram::parse_store_dtype(b->store);
      options.memory_halves = b->memory_halves;
      options.codes = b->codes;
      options.codebook_size = b->codebook;
      options.exact_store = b->exact_store;
      options.residual_bits = b->residual_bits;
      options.show_progress = !b->quiet;
      options.device = joined.device.str();
      options.batch_size = b->batch_size;
      const auto* world = joined.communicator ? &share : nullptr;
      if (b->shards > 1) {
        imram::build_sharded_index(b->out, b->model, split, b->shards, options, world);
      } else {
        auto writer = imram::IndexWriter::create(b->out, b->model, options, world);
        writer.add_split(split);
        writer.commit();
      }
      if (joined.communicator) joined.communicator->close();
      if (!joined.reports()) return 0;
      print_summary("built", *imram::GalleryIndex::open(b->out));
      return 0;
    };
  });

  struct AddOptions {
    std::string index, data, split, model, images;
    imram::cli::PictureOptions pictures;
    bool quiet = false;
  };
  auto a = std::make_shared<AddOptions>();
  auto* add = index->add_subcommand(
      "add", "append a split's images and captions to an index, or a folder of pictures (--images, no captions)");
  add->add_option("INDEX", a->index, "index directory")->required();
  auto* data = add->add_option("--data", a->data, "dataset directory");
  auto* split = add->add_option("--split", a->split, "split to add")->check(imram::cli::kSplitName);
  add->add_option("--model", a->model, "refuse unless the index was built with this model");
  auto* images = add->add_option("--images", a->images,
                                 "folder of pictures (searched recursively) or a file listing them: their features by "
                                 "--backbone, their boxes and thumbnails go into the index (docs/features.md)");
  const auto picture_options = imram::cli::add_picture_options(add, a->pictures, "the index's");
  images->excludes(data)->excludes(split)->needs(picture_options.front());
  for (auto* option : picture_options) option->needs(images);
  add->add_flag("--quiet", a->quiet, "no progress output");
  add->callback([&invocation, a] {
    if (a->images.empty() && (a->data.empty() || a->split.empty()))
      throw CLI::ValidationError("index add", "give --data DIR --split S, or --images DIR --backbone MODEL.pt");
    invocation.run = [a, device = invocation.globals.device] {
      if (!a->model.empty()) imram::GalleryIndex::open(a->index, imram::parse_device(device), a->model);
      if (!a->images.empty()) {
        auto options = a->pictures.feature_options();
        options.regions = a->pictures.regions;  // 0: the index's
        options.show_progress = !a->quiet;
        const auto warn = [](const std::string& line) { imram::log_warning(line); };
        const auto added = imram::add_pictures_to_index(a->index, a->images, options, device, warn);
        std::cout << "added " << added.images << " pictures (" << added.skipped << " skipped)\n";
      } else {
        const auto split = imram::PrecompSplit::open(a->data, a->split);
        auto writer = imram::IndexWriter::append(a->index, !a->quiet, device);
        writer.add_split(split);
        writer.commit();
      }
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
