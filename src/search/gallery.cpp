#include "imram/search/gallery.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "imram/error.h"
#include "imram/util/atomic_file.h"
#include "imram/util/fnv.h"
#include "imram/util/log.h"

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

std::uint64_t tree_bytes(const fs::path& dir) {
  std::uint64_t bytes = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec)) bytes += it->file_size(ec);
  return bytes;
}

// Reuse refreshes an entry's time, so that pruning removes the least recently used first.
void mark_used(const std::string& dir) {
  std::error_code ignored;  // a read-only cache is still usable
  fs::last_write_time(dir, fs::file_time_type::clock::now(), ignored);
}

}  // namespace

void prune_gallery_cache(const std::string& cache_dir, std::uint64_t limit_bytes, const std::string& keep) {
  struct Entry {
    std::string path;
    fs::file_time_type used;
    std::uint64_t bytes;
  };
  std::vector<Entry> candidates;
  std::uint64_t total = 0;
  std::error_code ec;
  for (fs::directory_iterator it(cache_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto path = it->path().string();
    const auto name = it->path().filename().string();
    if (const auto tmp = name.find(".tmp."); tmp != std::string::npos) {
      remove_abandoned_temporaries(cache_dir + "/" + name.substr(0, tmp));
      continue;
    }
    if (!is_index_dir(path)) continue;  // not a cache entry: never touched
    std::error_code time_ec;
    const Entry entry{path, fs::last_write_time(it->path(), time_ec), tree_bytes(it->path())};
    total += entry.bytes;
    if (name != keep) candidates.push_back(entry);
  }
  std::sort(candidates.begin(), candidates.end(), [](const Entry& a, const Entry& b) { return a.used < b.used; });
  for (const auto& entry : candidates) {
    if (total <= limit_bytes) break;
    remove_tree(entry.path);
    total -= std::min(total, entry.bytes);
  }
}

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

Gallery::Gallery(Model& model, const PrecompSplit& split, const std::string& model_dir, const std::string& cache_dir,
                 bool show_progress, std::uint64_t cache_limit_bytes) {
  if (!model.vocabulary) throw Error(model_dir + ": model has no vocab.json; it cannot read text");
  const auto device = model.net->parameters().front().device();
  if (cache_dir.empty()) {
    // Built in a private directory that is gone once mapped: nothing stays behind.
    static std::atomic<int> galleries{0};
    const auto dir = (fs::temp_directory_path() /
                      ("imram-gallery." + std::to_string(::getpid()) + "." + std::to_string(galleries++)))
                         .string();
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
  const std::string key = gallery_fingerprint(model_dir, split), dir = cache_dir + "/" + key;
  if (fs::exists(dir + "/manifest.json")) {
    try {
      auto cached = GalleryIndex::open(dir, device);
      cached->verify();
      index_ = std::move(cached);
      from_cache_ = true;
      mark_used(dir);
      prune_gallery_cache(cache_dir, cache_limit_bytes, key);
      return;
    } catch (const Error& e) {
      // A damaged cache entry costs only its rebuild.
      log_warning(std::string(e.what()) + "; encoding the gallery again");
    }
  }
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (fs::exists(dir, ec) && !fs::exists(dir + "/manifest.json", ec)) remove_tree(dir);
  try {
    build_gallery_index(dir, model_dir, split, show_progress);
  } catch (const Error& e) {
    // An unwritable cache (a full disk, say) costs only speed; a problem of the input (its error
    // names no path of the cache) would only be met again without one.
    if (std::string(e.what()).find(cache_dir) == std::string::npos) throw;
    log_warning(std::string("gallery cache not written: ") + e.what());
    *this = Gallery(model, split, model_dir, "", show_progress);
    return;
  }
  index_ = GalleryIndex::open(dir, device);
  prune_gallery_cache(cache_dir, cache_limit_bytes, key);
}

}  // namespace imram
