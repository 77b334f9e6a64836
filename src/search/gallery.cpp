#include "imram/search/gallery.h"

#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "imram/engine/encoding.h"
#include "imram/error.h"
#include "imram/util/checked_file.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

std::uint64_t fnv1a(const std::string& text, std::uint64_t hash = 0xcbf29ce484222325ull) {
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

std::string file_stamp(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  const auto time = fs::last_write_time(path, ec).time_since_epoch().count();
  return fs::weakly_canonical(path, ec).string() + ":" + std::to_string(size) + ":" + std::to_string(time);
}

std::vector<SearchHit> top_hits(const torch::Tensor& scores, std::int64_t top) {
  const auto k = std::min<std::int64_t>(top, scores.numel());
  const auto [values, indices] = scores.to(torch::kCPU, torch::kFloat64).topk(k);
  std::vector<SearchHit> hits;
  for (std::int64_t i = 0; i < k; ++i)
    hits.push_back({indices[i].item<std::int64_t>(), values[i].item<double>()});
  return hits;
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
  hex << std::hex << fnv1a(stamps);
  return split.name() + "-" + hex.str();
}

Gallery::Gallery(Model& model, const PrecompSplit& split, const std::string& model_dir,
                 const std::string& cache_dir)
    : model_(model), split_(split) {
  if (!model.vocabulary) throw Error(model_dir + ": model has no vocab.json; it cannot read text");
  const std::string cache = cache_dir.empty() ? "" : cache_dir + "/" + gallery_fingerprint(model_dir, split) + ".pt";
  const auto device = model.net->parameters().front().device();
  if (!cache.empty() && fs::exists(cache)) {
    std::vector<torch::Tensor> tensors;
    std::string problem;
    if (const auto bytes = read_checked_file(cache, &problem)) {
      try {
        std::istringstream in(*bytes);
        torch::load(tensors, in);
      } catch (const c10::Error&) {
        tensors.clear();
        problem = "not a gallery cache";
      }
    }
    if (tensors.size() != 3 && !problem.empty())
      std::cerr << "imram: warning: " << cache << ": " << problem << "; encoding the gallery again\n";
    if (tensors.size() == 3) {
      images_.regions = tensors[0].to(device);
      captions_ = {tensors[1].to(device), tensors[2]};
      from_cache_ = true;
      return;
    }
  }
  const auto ids = encode_caption_texts(*model.vocabulary, split.captions(), split.captions_path());
  images_ = encode_image_file(*model.net, split.features());
  captions_ = encode_caption_ids(*model.net, ids);
  if (!cache.empty()) {
    std::error_code ec;
    fs::create_directories(cache_dir, ec);
    // Serialised in memory, then written checked: LibTorch's file writer aborts the process on
    // a full disk. An unwritable cache only costs speed, so it is a warning.
    try {
      std::ostringstream bytes;
      torch::save(std::vector<torch::Tensor>{images_.regions.cpu(), captions_.words.cpu(), captions_.lengths},
                  bytes);
      write_checked_file(cache, bytes.str());
    } catch (const std::exception& e) {
      std::cerr << "imram: warning: gallery cache not written: " << e.what() << "\n";
    }
  }
}

std::vector<SearchHit> Gallery::search_images(const std::string& query, std::int64_t top) const {
  torch::NoGradGuard no_grad;
  const auto ids = encode_caption_texts(*model_.vocabulary, {query}, "--query");
  const auto padded = pad_captions(ids, 0, 1);
  const auto encoded = model_.net->encode_captions(padded.ids, padded.lengths);
  return top_hits(score_pairs(*model_.net, images_, encoded).total.select(1, 0), top);
}

std::vector<SearchHit> Gallery::search_captions(std::int64_t image, std::int64_t top) const {
  if (image < 0 || image >= split_.num_images())
    throw Error("--image " + std::to_string(image) + ": out of range, the " + split_.name() +
                " split has " + std::to_string(split_.num_images()) + " images");
  torch::NoGradGuard no_grad;
  EncodedImages one{images_.regions.narrow(0, image, 1), torch::Tensor()};
  return top_hits(score_pairs(*model_.net, one, captions_).total.select(0, 0), top);
}

}  // namespace imram
