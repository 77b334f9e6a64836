#include "imram/search/index_dir.h"

#include <stdio.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "imram/data/captions.h"
#include "imram/data/image_info.h"
#include "imram/data/tokenizer.h"
#include "imram/engine/fragment_products.h"
#include "imram/error.h"
#include "imram/image/picture.h"
#include "imram/model/tensor_io.h"
#include "imram/runtime/runtime.h"
#include "imram/search/faiss_shortlist.h"
#include "imram/search/fragment_codes.h"
#include "imram/search/residual_codes.h"
#include "imram/util/atomic_file.h"
#include "imram/util/counted_file.h"
#include "imram/util/json_file.h"
#include "imram/util/log.h"
#include "imram/util/progress.h"
#include "imram/util/rank_slice.h"
#include "imram/util/writer_lock.h"
#include "index_detail.h"

namespace fs = std::filesystem;

namespace imram {

using index_detail::scalar_type;

namespace {

// Values as the bytes the files append and a world gathers.
torch::Tensor bytes_of(const torch::Tensor& values) {
  const auto contiguous = values.contiguous();
  return torch::from_blob(contiguous.data_ptr(), {std::int64_t(contiguous.nbytes())}, torch::kUInt8).clone();
}

// (n, ...) values, n > 0, as (n, their bytes per item).
torch::Tensor bytes_per_item(const torch::Tensor& values) { return bytes_of(values).view({values.size(0), -1}); }

}  // namespace

struct IndexWriter::State {
  std::string dir;       // where the index lives (after commit)
  std::string work_dir;  // where files are written now
  bool creating = false;
  bool show_progress = true;
  Model model;
  Manifest manifest;
  std::int64_t committed_images = 0, committed_captions = 0, committed_words = 0;
  std::int64_t codebook_size = 0;  // 0: auto_codebook_size
  std::int64_t image_batch = 128;  // images encoded at once; captions 4x as many
  // A world building one index (index build --nproc): every rank encodes its blocks of each
  // round and codes its share of each block of fragments; rank 0 alone holds files and writes.
  const WorldShare* world = nullptr;
  bool writes() const { return !world || world->rank == 0; }
  int rank() const { return world ? world->rank : 0; }
  int ranks() const { return world ? world->size : 1; }
  std::map<std::string, AppendFile> files;
  // The existing index's (create: when it replaces one); none for a new directory.
  std::unique_ptr<WriterLock> lock;
  std::function<void(const std::string&)> warn = log_warning;

  AppendFile& file(const char* name) { return files.at(name); }

  // Without an exact store, regions.bin and words.bin hold only the fragments added since the
  // last commit, which the commit codes and compresses and then removes.
  bool scratch(const std::string& name) const {
    return !manifest.exact_store &&
           std::find_if(std::begin(kExactStoreFiles), std::end(kExactStoreFiles),
                        [&](const char* file) { return name == file; }) != std::end(kExactStoreFiles);
  }

  void open_files() {
    std::vector<const char*> names(std::begin(kStoreFiles), std::end(kStoreFiles));
    names.insert(names.end(), std::begin(kExactStoreFiles), std::end(kExactStoreFiles));
    if (manifest.residual_bits > 0) names.insert(names.end(), std::begin(kResidualFiles), std::end(kResidualFiles));
    if (manifest.memory_halves > 0)
      names.insert(names.end(), std::begin(kMemoryHalvesFiles), std::end(kMemoryHalvesFiles));
    if (manifest.codes) {
      names.insert(names.end(), std::begin(kCodesFiles), std::end(kCodesFiles));
      names.insert(names.end(), std::begin(kCodebookFiles), std::end(kCodebookFiles));
    }
    for (const auto* name : names) {
      const auto entry = scratch(name) ? FileEntry{} : manifest.files[name];
      files[name] = AppendFile(work_dir + "/" + name, entry.bytes, entry.hash);
    }
  }

  void remove_scratch() {
    for (const auto* name : kExactStoreFiles)
      if (scratch(name)) {
        files.erase(name);
        std::error_code ec;
        fs::remove(work_dir + "/" + name, ec);
      }
  }

  // The store's element type, (n, fragments, width) rows of `values`, on the CPU and contiguous.
  torch::Tensor stored(const torch::Tensor& values) const {
    return values.to(torch::kCPU, index_detail::scalar_type(manifest.store)).contiguous();
  }

  // The Gram matrices of stored fragments (n, f, d), as the engine computes them, in the store's type.
  torch::Tensor grams_of(const torch::Tensor& stored_fragments) const {
    auto grams = torch::empty({stored_fragments.size(0), stored_fragments.size(1), stored_fragments.size(1)});
    fragment_grams(stored_fragments, grams);
    return stored(grams);
  }

  // The codes of the fragments stored since the last commit: a side's codebook is learned once,
  // from a sample of the first fragments it holds, and kept by every later addition.
  void code_new_fragments() {
    const auto d = manifest.embed_size;
    const auto code_side = [&](const char* what, const char* store_name, const char* codes_name,
                               const char* codebook_name, const char* residuals_name, std::int64_t& centroids,
                               ResidualBuckets& buckets, std::int64_t from, std::int64_t to) {
      const bool learn = centroids == 0;
      if (learn && writes() && to > from)
        centroids = codebook_size > 0 ? std::min(codebook_size, to) : auto_codebook_size(to);
      if (world) {
        // Rank 0 holds the store: the others take the range and the codebook's size from it.
        auto plan = torch::tensor({from, to, centroids}, torch::kInt64);
        world->broadcast(plan);
        from = plan[0].item<std::int64_t>();
        to = plan[1].item<std::int64_t>();
        centroids = plan[2].item<std::int64_t>();
      }
      if (to == from) return;
      const auto row_bytes = d * std::int64_t(element_size(manifest.store));
      // A scratch store holds the fragments from `from` on: `all` is indexed from `base`.
      const auto base = scratch(store_name) ? from : 0;
      std::optional<MappedFile> mapped;
      torch::Tensor all, codebook;
      if (writes()) {
        file(store_name).sync();
        mapped.emplace(work_dir + "/" + store_name, std::uint64_t((to - base) * row_bytes));
        all = torch::from_blob(const_cast<char*>(mapped->data()), {to - base, d},
                               torch::dtype(index_detail::scalar_type(manifest.store)));
        if (learn) {
          // About 32 fragments per centroid, spread over all of them, are enough for k-means (and
          // bound its time: 8,192 centroids of d = 1,024 take minutes on two cores).
          const auto sample_size = std::min(to, centroids * 32);
          const auto picks = torch::linspace(0, double(to - 1), sample_size, torch::kFloat64).round().to(torch::kInt64);
          if (show_progress)
            log_note("learning a codebook of " + std::to_string(centroids) + " centroids from " +
                     std::to_string(sample_size) + " of " + std::to_string(to) + " " + what);
          // The other ranks wait for the codebook: their cores are this rank's meanwhile.
          const int own_threads = thread_count();
          if (world && world->threads_alone > own_threads) set_thread_count(world->threads_alone);
          try {
            const auto sample = all.index_select(0, picks - base).to(torch::kFloat32);
            codebook = train_codebook(sample, centroids);
            if (manifest.residual_bits > 0)
              buckets = train_residual_buckets(
                  sample - codebook.index_select(0, nearest_centroids(codebook, sample).to(torch::kInt64)),
                  manifest.residual_bits);
          } catch (...) {
            set_thread_count(own_threads);
            throw;
          }
          set_thread_count(own_threads);
          file(codebook_name).write(codebook.data_ptr<float>(), std::size_t(codebook.numel()) * 4);
        } else {
          const MappedFile kept(work_dir + "/" + codebook_name, std::uint64_t(centroids * d) * 4);
          codebook = torch::from_blob(const_cast<char*>(kept.data()), {centroids, d}, torch::kFloat32).clone();
        }
      }
      if (world) {
        if (!writes()) codebook = torch::empty({centroids, d}, torch::kFloat32);
        world->broadcast(codebook);
        if (manifest.residual_bits > 0) {
          // The buckets travel as one row: cutoffs, then values.
          const auto count = (std::int64_t(1) << manifest.residual_bits) * 2 - 1;
          auto row = torch::empty({count}, torch::kFloat32);
          if (writes()) {
            std::copy(buckets.cutoffs.begin(), buckets.cutoffs.end(), row.data_ptr<float>());
            std::copy(buckets.values.begin(), buckets.values.end(), row.data_ptr<float>() + count / 2);
          }
          world->broadcast(row);
          const auto* values = row.data_ptr<float>();
          buckets.bits = manifest.residual_bits;
          buckets.cutoffs.assign(values, values + count / 2);
          buckets.values.assign(values + count / 2, values + count);
        }
      }
      constexpr std::int64_t kBlock = 1 << 16;
      ProgressBar bar(std::string("coding ") + what, to - from, what, show_progress);
      for (std::int64_t begin = from; begin < to; begin += kBlock) {
        const auto n = std::min(kBlock, to - begin);
        torch::Tensor rows, received;
        if (world) {
          // Each rank codes its share of the block, as rows of bytes (any store type travels).
          std::vector<std::int64_t> counts;
          for (int r = 0; r < ranks(); ++r) counts.push_back(rank_slice(n, r, ranks()).count);
          received = world->scatter_rows(
              writes() ? torch::from_blob(const_cast<char*>(mapped->data()) + (begin - base) * row_bytes,
                                          {n, row_bytes}, torch::kUInt8)
                       : torch::empty({0, row_bytes}, torch::kUInt8),
              counts);
          rows = torch::from_blob(received.data_ptr(), {received.size(0), d},
                                  torch::dtype(index_detail::scalar_type(manifest.store)));
        } else {
          rows = all.narrow(0, begin - base, n);
        }
        auto codes = nearest_centroids(codebook, rows);
        torch::Tensor residuals;
        if (manifest.residual_bits > 0) residuals = encode_residuals(codebook, rows, codes, buckets);
        if (world) {
          codes = world->gather_rows(codes);
          if (residuals.defined()) residuals = world->gather_rows(residuals);
        }
        if (writes()) {
          file(codes_name).write(codes.data_ptr<std::int32_t>(), std::size_t(n) * 4);
          if (residuals.defined()) file(residuals_name).write(residuals.data_ptr(), std::size_t(residuals.numel()));
        }
        bar.update(begin + n - from);
      }
      bar.finish();
    };
    auto& m = manifest;
    code_side("regions", "regions.bin", "region_codes.bin", "region_codebook.bin", "region_residuals.bin",
              m.region_centroids, m.region_buckets, committed_images * m.regions, m.images * m.regions);
    code_side("words", "words.bin", "word_codes.bin", "word_codebook.bin", "word_residuals.bin", m.word_centroids,
              m.word_buckets, committed_words, m.words);
  }

  // An image block's stored values, one row of bytes per image: its regions, then (as the index
  // keeps them) their Gram matrices, memory halves and global embedding.
  torch::Tensor image_rows(const torch::Tensor& features) {
    torch::NoGradGuard no_grad;
    model.net->eval();
    auto encoded = model.net->encode_images(features);
    const auto regions = stored(encoded.regions);
    std::vector<torch::Tensor> parts{bytes_per_item(regions)};
    if (manifest.codes) parts.push_back(bytes_per_item(grams_of(regions)));
    if (manifest.memory_halves > 0) {
      model.net->attach_memory_halves(encoded);
      parts.push_back(
          bytes_per_item(stored(model.net->joined_memory_halves(encoded.text_halves, encoded.image_halves))));
    }
    if (model.net->global_head)
      parts.push_back(bytes_per_item(model.net->global_head->embed_images(encoded).to(torch::kCPU, torch::kFloat32)));
    return torch::cat(parts, 1);
  }

  // What image_rows' row of an image of `regions` regions holds, in order: each part's file and bytes.
  std::vector<std::pair<const char*, std::int64_t>> image_row_parts(std::int64_t regions) const {
    const auto& m = manifest;
    const auto es = std::int64_t(element_size(m.store));
    std::vector<std::pair<const char*, std::int64_t>> parts{{"regions.bin", regions * m.embed_size * es}};
    if (m.codes) parts.emplace_back("region_grams.bin", regions * regions * es);
    if (m.memory_halves > 0) parts.emplace_back("region_halves.bin", regions * m.memory_halves * es);
    if (model.net->global_head) parts.emplace_back("image_globals.bin", m.global_dim * 4);
    return parts;
  }

  // Appends image_rows' rows to the files they belong to.
  void write_image_rows(const torch::Tensor& rows, std::int64_t regions) {
    std::int64_t at = 0;
    for (const auto& [name, width] : image_row_parts(regions)) {
      const auto part = rows.narrow(1, at, width).contiguous();
      file(name).write(part.data_ptr(), std::size_t(part.numel()));
      at += width;
    }
  }

  // A block of captions' stored values as one stream of bytes: their words, memory halves and
  // Gram matrices (each caption's own length), then their global embeddings.
  torch::Tensor caption_bytes(const TokenIds& ids, std::int64_t begin, std::int64_t n) {
    torch::NoGradGuard no_grad;
    model.net->eval();
    const auto padded = pad_captions(ids, begin, n);
    auto encoded = model.net->encode_captions(padded.ids, padded.lengths);
    const auto words = stored(encoded.words);
    const auto length = [&](std::int64_t j) { return std::int64_t(ids[std::size_t(begin + j)].size()); };
    std::vector<torch::Tensor> parts;
    for (std::int64_t j = 0; j < n; ++j) parts.push_back(bytes_of(words[j].narrow(0, 0, length(j))));
    if (manifest.memory_halves > 0) {
      model.net->attach_memory_halves(encoded);
      const auto halves = stored(model.net->joined_memory_halves(encoded.text_halves, encoded.image_halves));
      for (std::int64_t j = 0; j < n; ++j) parts.push_back(bytes_of(halves[j].narrow(0, 0, length(j))));
    }
    if (manifest.codes) {
      const auto grams = grams_of(words);
      for (std::int64_t j = 0; j < n; ++j)
        parts.push_back(bytes_of(grams[j].narrow(0, 0, length(j)).narrow(1, 0, length(j))));
    }
    if (model.net->global_head)
      parts.push_back(bytes_of(model.net->global_head->embed_captions(encoded).to(torch::kCPU, torch::kFloat32)));
    return torch::cat(parts);
  }

  // Appends caption_bytes' stream of captions [begin, begin + n) to the files, their word offsets
  // running on from `words`; returns the stream's size.
  std::int64_t write_caption_bytes(const std::uint8_t* bytes, const TokenIds& ids,
                                   const std::vector<std::string>& texts, std::int64_t begin, std::int64_t n,
                                   std::int64_t& words_so_far) {
    const auto& m = manifest;
    const auto es = std::int64_t(element_size(m.store));
    std::int64_t words = 0, gram_cells = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      const auto length = std::int64_t(ids[std::size_t(begin + j)].size());
      words += length;
      gram_cells += length * length;
    }
    std::int64_t at = 0;
    const auto put = [&](const char* name, std::int64_t width) {
      file(name).write(bytes + at, std::size_t(width));
      at += width;
    };
    put("words.bin", words * m.embed_size * es);
    if (m.memory_halves > 0) put("word_halves.bin", words * m.memory_halves * es);
    if (m.codes) put("word_grams.bin", gram_cells * es);
    if (model.net->global_head) put("caption_globals.bin", n * m.global_dim * 4);
    for (std::int64_t j = 0; j < n; ++j) {
      words_so_far += std::int64_t(ids[std::size_t(begin + j)].size());
      file("word_offsets.bin").write(&words_so_far, sizeof words_so_far);
      const auto& text = texts[std::size_t(begin + j)];
      file("captions.txt").write(text.data(), text.size());
      file("captions.txt").write("\n", 1);
    }
    return at;
  }

  // Raw features (n, R, D), memory-mapped, encoded and stored a block at a time; in a world,
  // rank r encodes the r-th block of each round and rank 0 writes the round's rows in order.
  // `first`/`count`: the images [first, first + count) of the file (count -1: to its end).
  void add_feature_file(const NpyArray& file, const std::string& what, std::int64_t first = 0,
                        std::int64_t count = -1) {
    const auto all = tensor_view(file);
    const auto features = all.narrow(0, first, count < 0 ? all.size(0) - first : count);
    const auto N = features.size(0), R = features.size(1);
    check_region_count(R);
    auto& m = manifest;
    ProgressBar bar("indexing " + what + " images", N, "images", show_progress);
    std::int64_t row_bytes = 0;
    for (const auto& part : image_row_parts(R)) row_bytes += part.second;
    for (std::int64_t round = 0; round < N; round += image_batch * ranks()) {
      const auto mine = std::min(N, round + rank() * image_batch);
      const auto n = std::min(image_batch, N - mine);
      auto rows = torch::empty({0, row_bytes}, torch::kUInt8);
      if (n > 0) {
        const auto block = features.narrow(0, mine, n);
        check_finite_features(block, first + mine, file.path());
        rows = image_rows(block);
      }
      if (world) rows = world->gather_rows(rows);
      if (writes()) write_image_rows(rows, R);
      const auto round_end = std::min(N, round + image_batch * ranks());
      m.regions = R;
      m.images += round_end - round;
      bar.update(round_end);
    }
    bar.finish();
  }

  void check_region_count(std::int64_t regions) const {
    const auto& m = manifest;
    if (m.images + m.captions > 0 && m.regions != regions)
      throw Error("images have " + std::to_string(regions) + " regions, the index holds images of " +
                  std::to_string(m.regions));
  }

  // The info of the images just added, from `first_image` on, each with its picture's thumbnail:
  // only while every image before them has an info line, since lines are found by image.
  void describe(std::vector<ImageInfo> infos, std::int64_t first_image) {
    if (infos.empty() || manifest.described != first_image) return;
    auto& offsets = file(index_detail::kThumbnailOffsetsFile);
    auto& thumbnails = file(index_detail::kThumbnailsFile);
    if (manifest.described == 0) {
      const std::int64_t zero = 0;
      offsets.write(&zero, sizeof zero);
    }
    const bool pictures =
        std::any_of(infos.begin(), infos.end(), [](const auto& info) { return !info.picture.empty(); });
    ProgressBar bar("thumbnails", std::int64_t(infos.size()), "pictures", show_progress && pictures);
    for (auto& info : infos) {
      const auto image = manifest.described;
      if (info.twin >= 0) info.twin += first_image;
      const auto line = image_info_json(info) + "\n";
      file(index_detail::kImageInfoFile).write(line.data(), line.size());
      std::vector<unsigned char> jpeg;
      if (!info.picture.empty()) {
        // A picture moved or damaged since its features were computed costs only its thumbnail
        // (a failed write, below, still fails the addition).
        try {
          jpeg = encode_jpeg(fit_picture(read_picture(info.picture, {}, kThumbnailSide), kThumbnailSide));
        } catch (const Error& e) {
          warn(std::string(e.what()) + "; image " + std::to_string(image) + " is indexed without a thumbnail");
        }
      }
      if (!jpeg.empty()) thumbnails.write(jpeg.data(), jpeg.size());
      const auto end = std::int64_t(thumbnails.bytes());
      offsets.write(&end, sizeof end);
      ++manifest.described;
      bar.update(manifest.described - first_image);
    }
    bar.finish();
  }
};

IndexWriter::IndexWriter(std::unique_ptr<State> state) : state_(std::move(state)) {}
IndexWriter::IndexWriter(IndexWriter&&) noexcept = default;
IndexWriter::~IndexWriter() { abandon(); }

IndexWriter& IndexWriter::operator=(IndexWriter&& other) noexcept {
  if (this != &other) {
    abandon();
    state_ = std::move(other.state_);
  }
  return *this;
}

void IndexWriter::abandon() noexcept {
  if (state_ && state_->creating) {
    state_->files.clear();
    remove_tree(state_->work_dir);
  }
}

IndexWriter IndexWriter::create(const std::string& dir, const std::string& model_dir, const IndexOptions& options,
                                const WorldShare* world) {
  if (options.batch_size < 1) throw Error("index build: a batch of " + std::to_string(options.batch_size) + " images");
  auto state = std::make_unique<State>();
  state->dir = dir;
  state->world = world;
  state->image_batch = options.batch_size;
  state->codebook_size = options.codebook_size;
  state->show_progress = options.show_progress && state->writes();
  const auto describe_model = [&](const std::string& fingerprint) {
    auto& m = state->manifest;
    m.model_fingerprint = fingerprint;
    m.embed_size = state->model.config().embed_size;
    m.global_dim = state->model.config().global_head;
    m.faiss_factory = options.faiss_factory;
    m.store = options.store;
    // A model with K = 1 updates no memory: it has no halves to keep.
    m.memory_halves = options.memory_halves ? state->model.net->memory_halves_width() : 0;
    m.codes = options.codes;
    m.residual_bits =
        options.residual_bits != kAutoResidualBits ? options.residual_bits : (options.exact_store ? 0 : 2);
    m.exact_store = options.exact_store;
    if (m.residual_bits > 0 && !m.codes) throw Error("index build: residuals are kept beside codes; drop --no-codes");
    if (m.residual_bits > 0 && !residual_bits_fit(m.residual_bits, m.embed_size))
      throw Error("index build: residuals of " + std::to_string(m.residual_bits) + " bits per value (1, 2, 4 or 8" +
                  " that pack the model's " + std::to_string(m.embed_size) + " values into whole bytes)");
    if (!m.exact_store && m.residual_bits == 0)
      throw Error("index build: without the exact store, fragments are decoded from residuals: give residual bits");
    if (!m.exact_store && m.memory_halves > 0)
      throw Error("index build: memory halves are products of the exact fragments; keep the exact store with them");
  };
  if (!state->writes()) {
    // Another rank of the world only encodes and codes: rank 0 holds the directory.
    state->model = load_model(model_dir, parse_device(options.device));
    describe_model("");
    return IndexWriter(std::move(state));
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !is_index_dir(dir))
    throw Error(dir + ": exists and is not an index directory; refusing to replace it");
  // The index replaced at commit must not be one that an `add` is writing.
  if (fs::exists(dir, ec)) state->lock = std::make_unique<WriterLock>(dir + "/writer.lock", "index " + dir);
  state->creating = true;
  state->model = load_model(model_dir, parse_device(options.device));
  state->work_dir = fresh_temporary_directory(dir);
  try {
    save_model(state->work_dir + "/model", state->model);
    describe_model(model_fingerprint(state->work_dir + "/model"));
    state->open_files();
  } catch (...) {
    state->files.clear();
    remove_tree(state->work_dir);  // a full disk, say: nothing half-made stays behind
    throw;
  }
  return IndexWriter(std::move(state));
}

IndexWriter IndexWriter::append(const std::string& dir, bool show_progress, const std::string& device) {
  auto state = std::make_unique<State>();
  state->dir = dir;
  state->work_dir = dir;
  state->show_progress = show_progress;
  if (!fs::is_directory(dir)) throw Error(dir + ": index directory does not exist");
  if (is_sharded_index_dir(dir))
    throw Error(dir +
                ": a sharded index takes no additions (its shards' ranges are fixed); rebuild it with "
                "index build --shards");
  state->lock = std::make_unique<WriterLock>(dir + "/writer.lock", "index " + dir);
  state->manifest = read_manifest(dir);
  state->model = load_model(dir + "/model", parse_device(device));
  if (model_fingerprint(dir + "/model") != state->manifest.model_fingerprint)
    throw Error(dir + "/model: differs from the model the index was built with (fingerprint mismatch)");
  state->committed_images = state->manifest.images;
  state->committed_captions = state->manifest.captions;
  state->committed_words = state->manifest.words;
  state->open_files();
  return IndexWriter(std::move(state));
}

void IndexWriter::add_images(const torch::Tensor& features) {
  auto& s = *state_;
  if (features.dim() != 3) throw Error("image features must be (images, regions, features)");
  s.check_region_count(features.size(1));
  if (features.size(0) > 0) s.write_image_rows(s.image_rows(features), features.size(1));
  s.manifest.regions = features.size(1);
  s.manifest.images += features.size(0);
}

void IndexWriter::add_captions(const TokenIds& ids, const std::vector<std::string>& texts) {
  auto& s = *state_;
  auto& m = s.manifest;
  if (ids.size() != texts.size()) throw Error("captions: ids and texts differ in count");
  // captions.txt holds one caption per line.
  for (std::size_t j = 0; j < texts.size(); ++j)
    if (texts[j].find('\n') != std::string::npos)
      throw Error("caption " + std::to_string(m.captions + std::int64_t(j)) + ": holds a line break");
  const auto batch = 4 * s.image_batch;
  const auto count = std::int64_t(ids.size());
  if (m.captions == 0 && s.writes()) {
    const std::int64_t zero = 0;
    s.file("word_offsets.bin").write(&zero, sizeof zero);
  }
  // In a world, rank r encodes the r-th block of each round; rank 0 writes the round in order.
  for (std::int64_t round = 0; round < count; round += batch * s.ranks()) {
    const auto mine = std::min(count, round + s.rank() * batch);
    const auto n = std::min(batch, count - mine);
    auto bytes = n > 0 ? s.caption_bytes(ids, mine, n) : torch::empty({0}, torch::kUInt8);
    if (s.world) bytes = s.world->gather_rows(bytes);
    const auto round_end = std::min(count, round + batch * s.ranks());
    if (s.writes()) {
      const auto* at = bytes.data_ptr<std::uint8_t>();
      auto words = m.words;
      for (auto begin = round; begin < round_end; begin += batch)
        at += s.write_caption_bytes(at, ids, texts, begin, std::min(batch, round_end - begin), words);
    }
    for (auto j = round; j < round_end; ++j) m.words += std::int64_t(ids[std::size_t(j)].size());
    m.captions += round_end - round;
  }
}

void IndexWriter::add_split(const PrecompSplit& split, std::int64_t first_image, std::int64_t images) {
  auto& s = *state_;
  auto& m = s.manifest;
  if (images < 0) images = split.num_images() - first_image;
  if (first_image < 0 || images < 0 || first_image + images > split.num_images())
    throw Error(split.features_path() + ": images [" + std::to_string(first_image) + ", " +
                std::to_string(first_image + images) + ") asked of " + std::to_string(split.num_images()));
  if (m.captions != std::int64_t(m.captions_per_image) * m.images)
    throw Error(s.dir + ": its captions are not tied to its images; a split cannot be added");
  if (m.images > 0 && m.captions_per_image != split.captions_per_image())
    throw Error(split.captions_path() + ": " + std::to_string(split.captions_per_image()) +
                " captions per image, the index holds " + std::to_string(m.captions_per_image));
  const bool whole = first_image == 0 && images == split.num_images();
  const auto data_dir = fs::path(split.features_path()).parent_path().string();
  nlohmann::ordered_json source{{"data", source_path(data_dir)}, {"split", split.name()}};
  if (!whole) source["first_image"] = first_image;
  refuse_held_source(source);
  std::vector<ImageInfo> infos;
  if (m.described == m.images && s.writes()) {
    infos = dataset_image_info(data_dir, split.name(), split.num_images());
    if (!infos.empty()) {
      infos = std::vector<ImageInfo>(infos.begin() + first_image, infos.begin() + first_image + images);
      // A twin is named by its place among the images added; one outside the range is not here.
      for (auto& info : infos)
        info.twin = info.twin >= first_image && info.twin < first_image + images ? info.twin - first_image : -1;
    }
  }
  split.require_feature_dim(s.model.config().img_dim);
  const auto per_image = std::int64_t(split.captions_per_image());
  const std::vector<std::string> texts(split.captions().begin() + first_image * per_image,
                                       split.captions().begin() + (first_image + images) * per_image);
  const auto ids = encode_caption_texts(*s.model.vocabulary, texts, split.captions_path(), first_image * per_image + 1);
  const auto first = m.images;
  s.add_feature_file(split.features(), split.name(), first_image, images);
  {
    const auto M = std::int64_t(ids.size());
    ProgressBar bar("indexing " + split.name() + " captions", M, "captions", s.show_progress);
    constexpr std::int64_t kBatch = 4096;
    for (std::int64_t j = 0; j < M; j += kBatch) {
      const auto n = std::min(kBatch, M - j);
      add_captions(TokenIds(ids.begin() + j, ids.begin() + j + n),
                   std::vector<std::string>(texts.begin() + j, texts.begin() + j + n));
      bar.update(j + n);
    }
    bar.finish();
  }
  m.captions_per_image = split.captions_per_image();
  s.describe(infos, first);
  auto record = source;
  record["images"] = images;
  record["captions"] = images * per_image;
  m.sources.push_back(record);
}

void IndexWriter::add_uncaptioned_images(const NpyArray& features, const std::vector<ImageInfo>& infos,
                                         const nlohmann::ordered_json& source) {
  auto& s = *state_;
  auto& m = s.manifest;
  refuse_held_source(source);
  features.require_ndim(3);
  features.require_dtype(DType::Float32);
  if (features.dim(2) != s.model.config().img_dim)
    throw Error(features.path() + ": regions of " + std::to_string(features.dim(2)) +
                " features, the index's model reads " + std::to_string(s.model.config().img_dim));
  if (!infos.empty() && std::int64_t(infos.size()) != features.dim(0))
    throw Error(features.path() + ": " + std::to_string(features.dim(0)) + " images, but " +
                std::to_string(infos.size()) + " image infos");
  if (m.images > 0 && features.dim(1) != m.regions)
    throw Error(features.path() + ": images of " + std::to_string(features.dim(1)) +
                " regions, the index holds images of " + std::to_string(m.regions));
  const auto first_image = m.images;
  s.add_feature_file(features, "uncaptioned");
  // Caption j belonged to image j / captions_per_image; with images of no captions among them, no rule holds.
  m.captions_per_image = 0;
  s.describe(infos, first_image);
  auto record = source;
  record["images"] = features.dim(0);
  record["captions"] = 0;
  m.sources.push_back(record);
}

bool is_sharded_index_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(dir) / index_detail::kShardsFile, ec)) return false;
  try {
    const auto json = read_json_file(dir + "/" + index_detail::kShardsFile, "sharded index");
    return json.is_object() && json.value("format", "") == index_detail::kShardedIndexFormat;
  } catch (const Error&) {
    return false;
  }
}

void build_sharded_index(const std::string& dir, const std::string& model_dir, const PrecompSplit& split, int shards,
                         const IndexOptions& options, const WorldShare* world) {
  if (shards < 1 || shards > split.num_images())
    throw Error(split.features_path() + ": " + std::to_string(split.num_images()) + " images cannot make " +
                std::to_string(shards) + " shards");
  const bool writes = !world || world->rank == 0;
  std::string work_dir;
  std::unique_ptr<WriterLock> lock;
  if (writes) {
    std::error_code ec;
    if (fs::exists(dir, ec) && !is_index_dir(dir) && !is_sharded_index_dir(dir))
      throw Error(dir + ": exists and is not an index directory; refusing to replace it");
    if (is_index_dir(dir)) lock = std::make_unique<WriterLock>(dir + "/writer.lock", "index " + dir);
    work_dir = fresh_temporary_directory(dir);
  }
  try {
    nlohmann::ordered_json listing{{"format", index_detail::kShardedIndexFormat}, {"version", 1}};
    listing["shards"] = nlohmann::ordered_json::array();
    // Even shares, but a pair of twins (the synthetic worlds' near-duplicates, image i and i + 1)
    // stays in one shard: a shard knows only its own images, so a split pair would lose its twin.
    const auto data_dir = fs::path(split.features_path()).parent_path().string();
    const auto infos = dataset_image_info(data_dir, split.name(), split.num_images());
    std::vector<std::int64_t> bounds{0};
    for (int shard = 1; shard <= shards; ++shard) {
      const auto share = rank_slice(split.num_images(), shard - 1, shards);
      auto bound = std::max(bounds.back(), share.begin + share.count);
      if (bound > 0 && bound < split.num_images() && !infos.empty() && infos[std::size_t(bound)].twin == bound - 1)
        ++bound;
      bounds.push_back(bound);
    }
    for (int shard = 0; shard < shards; ++shard) {
      const Slice range{bounds[std::size_t(shard)], bounds[std::size_t(shard) + 1] - bounds[std::size_t(shard)]};
      if (range.count == 0)
        throw Error(split.features_path() + ": too few images for " + std::to_string(shards) + " shards");
      char name[32];
      std::snprintf(name, sizeof name, "shard-%03d", shard);
      auto writer = IndexWriter::create(work_dir + "/" + name, model_dir, options, world);
      writer.add_split(split, range.begin, range.count);
      writer.commit();
      listing["shards"].push_back({{"dir", name},
                                   {"first_image", range.begin},
                                   {"images", range.count},
                                   {"captions", range.count * split.captions_per_image()}});
    }
    if (!writes) return;
    write_file_atomically(work_dir + "/" + index_detail::kShardsFile,
                          [&](std::ostream& out) { out << listing.dump(2) << "\n"; });
    move_directory_into_place(work_dir, dir);
  } catch (...) {
    if (writes) remove_tree(work_dir);
    throw;
  }
}

std::string source_path(const std::string& path) {
  std::error_code error;
  auto canonical = fs::weakly_canonical(fs::absolute(path), error);
  if (error) return fs::absolute(path).lexically_normal().string();
  auto text = canonical.string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}

void IndexWriter::refuse_held_source(const nlohmann::ordered_json& source) const {
  // Paths compare by what they name: an older manifest may hold another spelling of the same one.
  const auto same_value = [](const std::string& key, const nlohmann::ordered_json& held,
                             const nlohmann::ordered_json& value) {
    if ((key == "data" || key == "pictures") && held.is_string() && value.is_string())
      return source_path(held.get<std::string>()) == source_path(value.get<std::string>());
    return held == value;
  };
  for (const auto& held : state_->manifest.sources) {
    bool same = true;
    for (const auto& field : source.items())
      same = same && held.contains(field.key()) && same_value(field.key(), held.at(field.key()), field.value());
    if (!same) continue;
    const auto what = source.contains("split")
                          ? "the " + source.value("split", "") + " split of " + source.value("data", "")
                          : "the pictures of " + source.value("pictures", "");
    throw Error(state_->dir + ": already holds " + what + "; adding it again would hold its items twice");
  }
}

void IndexWriter::on_warning(std::function<void(const std::string&)> warn) { state_->warn = std::move(warn); }
const ModelConfig& IndexWriter::model_config() const { return state_->model.config(); }
std::int64_t IndexWriter::regions_per_image() const { return state_->manifest.regions; }

void IndexWriter::commit() {
  auto& s = *state_;
  auto& m = s.manifest;
  if (m.codes) s.code_new_fragments();
  if (!s.writes()) return;
  s.remove_scratch();
  for (auto& [name, file] : s.files) {
    file.sync();
    m.files[name] = {file.bytes(), file.hash()};
  }
  const auto old_generation = m.generation;
  if (s.model.net->global_head) {
    if (m.faiss_factory.empty()) m.faiss_factory = default_faiss_factory(m.images, m.global_dim);
    ++m.generation;
    const auto g = m.global_dim;
    for (const auto side : {GallerySide::Images, GallerySide::Captions}) {
      const bool images = side == GallerySide::Images;
      const char* name = images ? "image_globals.bin" : "caption_globals.bin";
      const auto total = images ? m.images : m.captions;
      const auto committed = images ? s.committed_images : s.committed_captions;
      const MappedFile globals(s.work_dir + "/" + name, std::uint64_t(total * g) * 4);
      const auto all = total ? torch::from_blob(const_cast<char*>(globals.data()), {total, g}, torch::kFloat32)
                             : torch::empty({0, g});
      std::shared_ptr<faiss::Index> index;
      if (s.creating || old_generation == 0) {
        index = build_faiss_index(images ? m.faiss_factory : default_faiss_factory(total, m.global_dim), all);
      } else {
        index = read_faiss_index(s.work_dir + "/" + faiss_file(old_generation, side == GallerySide::Images));
        add_to_faiss_index(*index, all.narrow(0, committed, total - committed));
      }
      const auto name_now = faiss_file(m.generation, side == GallerySide::Images), path = s.work_dir + "/" + name_now;
      write_faiss_index(*index, path);
      // Checksummed like the store, so that `index verify` covers the shortlist too.
      const auto bytes = std::uint64_t(fs::file_size(path));
      m.files[name_now] = {bytes, hash_file(path, bytes)};
      m.files.erase(faiss_file(old_generation, side == GallerySide::Images));
    }
  }
  write_file_atomically(s.work_dir + "/manifest.json",
                        [&](std::ostream& out) { out << manifest_json(m).dump(2) << "\n"; });
  s.files.clear();
  if (s.creating) {
    s.creating = false;  // the temporary is gone either way
    move_directory_into_place(s.work_dir, s.dir);
  } else if (old_generation > 0 && old_generation != m.generation) {
    std::error_code ec;
    for (const auto side : {GallerySide::Images, GallerySide::Captions})
      fs::remove(s.work_dir + "/" + faiss_file(old_generation, side == GallerySide::Images), ec);
  }
  s.committed_images = m.images;
  s.committed_captions = m.captions;
  s.committed_words = m.words;
  // Committed, the writer writes nothing more: the next writer may start now (index add after a
  // build, or a build in parts, while this object lives on).
  s.lock.reset();
}

}  // namespace imram
