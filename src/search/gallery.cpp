#include "imram/search/gallery.h"

#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "imram/error.h"
#include "imram/util/atomic_file.h"
#include "imram/util/fnv.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

std::string file_stamp(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  const auto time = fs::last_write_time(path, ec).time_since_epoch().count();
  return fs::weakly_canonical(path, ec).string() + ":" + std::to_string(size) + ":" + std::to_string(time);
}

void build_gallery_index(const std::string& dir, const std::string& model_dir, const PrecompSplit& split,
                         bool show_progress) {
  IndexOptions options;
  options.store = StoreDType::Float32;  // so that a gallery scores exactly as `imram score`
  options.show_progress = show_progress;
  auto writer = IndexWriter::create(dir, model_dir, options);
  writer.add_split(split);
  writer.commit();
}

}  // namespace

std::string default_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/imram";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/imram";
  return "";
}

std::string gallery_fingerprint(const std::string& model_dir, const PrecompSplit& split) {
  std::string stamps = file_stamp(fs::path(model_dir) / "config.json");
  for (const auto& entry : fs::directory_iterator(fs::path(model_dir) / "weights"))
    stamps += "|" + file_stamp(entry.path());
  stamps += "|" + file_stamp(split.features_path()) + "|" + file_stamp(split.captions_path());
  std::ostringstream hex;
  hex << std::hex << fnv1a64(stamps);
  return split.name() + "-" + hex.str();
}

Gallery::Gallery(Model& model, const PrecompSplit& split, const std::string& model_dir,
                 const std::string& cache_dir, bool show_progress) {
  if (!model.vocabulary) throw Error(model_dir + ": model has no vocab.json; it cannot read text");
  const auto device = model.net->parameters().front().device();
  if (cache_dir.empty()) {
    // Built in a private directory that is gone once mapped: nothing stays behind.
    static std::atomic<int> galleries{0};
    const auto dir = (fs::temp_directory_path() /
                      ("imram-gallery." + std::to_string(::getpid()) + "." + std::to_string(galleries++))).string();
    build_gallery_index(dir, model_dir, split, show_progress);
    try {
      index_ = GalleryIndex::open(dir, device);
    } catch (...) {
      remove_tree(dir);
      throw;
    }
    remove_tree(dir);
    return;
  }
  const std::string dir = cache_dir + "/" + gallery_fingerprint(model_dir, split);
  if (fs::exists(dir + "/manifest.json")) {
    try {
      auto cached = GalleryIndex::open(dir, device);
      cached->verify();
      index_ = std::move(cached);
      from_cache_ = true;
      return;
    } catch (const Error& e) {
      // A damaged cache entry costs only its rebuild.
      std::cerr << "imram: warning: " << e.what() << "; encoding the gallery again\n";
    }
  }
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (fs::exists(dir, ec) && !fs::exists(dir + "/manifest.json", ec)) remove_tree(dir);
  try {
    build_gallery_index(dir, model_dir, split, show_progress);
  } catch (const Error& e) {
    // An unwritable cache (a full disk, say) costs only speed.
    std::cerr << "imram: warning: gallery cache not written: " << e.what() << "\n";
    *this = Gallery(model, split, model_dir, "", show_progress);
    return;
  }
  index_ = GalleryIndex::open(dir, device);
}

std::vector<SearchHit> Gallery::search_images(const std::string& query, std::int64_t top) const {
  return index_->searcher(GallerySide::Images, 0)->search(index_->text_query(query), top, nullptr);
}

std::vector<SearchHit> Gallery::search_captions(std::int64_t image, std::int64_t top) const {
  return index_->searcher(GallerySide::Captions, 0)->search(index_->image_query(image), top, nullptr);
}

}  // namespace imram
