#include "imram/search/index_dir.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "imram/data/captions.h"
#include "imram/data/synthetic.h"
#include "imram/data/tokenizer.h"
#include "imram/error.h"
#include "imram/model/tensor_io.h"
#include "imram/runtime/runtime.h"
#include "imram/search/faiss_shortlist.h"
#include "imram/search/rerank.h"
#include "imram/util/atomic_file.h"
#include "imram/util/fnv.h"
#include "imram/util/json_file.h"
#include "imram/util/progress.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

// The synthetic world's scene descriptions travel with the index as `gallery_scenes.jsonl`.
constexpr const char* kScenesSplit = "gallery";

std::uint64_t hash_file(const std::string& path, std::uint64_t bytes, std::uint64_t hash = kFnv1aOffset) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  std::uint64_t left = bytes;
  while (left > 0 && in) {
    in.read(buffer.data(), std::streamsize(std::min<std::uint64_t>(left, buffer.size())));
    const auto got = std::uint64_t(in.gcount());
    if (got == 0) break;
    hash = fnv1a64(buffer.data(), got, hash);
    left -= got;
  }
  if (left > 0) throw Error(path + ": shorter than the manifest says");
  return hash;
}

// The first `bytes` of a file: what the manifest commits of it.
std::string read_committed(const std::string& path, std::uint64_t bytes) {
  std::ifstream file(path, std::ios::binary);
  std::string committed(std::size_t(bytes), '\0');
  if (!file.read(committed.data(), std::streamsize(committed.size())))
    throw Error(path + ": shorter than the manifest counts");
  return committed;
}

// One writer at a time per index directory: an advisory lock on DIR/writer.lock, held from the
// writer's opening to its commit (released by the kernel when a writer dies). The file holds
// the holder's pid, for the error of a writer that comes second.
class WriterLock {
 public:
  explicit WriterLock(const std::string& dir) {
    const auto path = dir + "/writer.lock";
    for (;;) {
      fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd_ < 0) throw Error(path + ": cannot open the index's lock (" + std::strerror(errno) + ")");
      if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int error = errno;
        char holder[32] = {};
        const auto got = ::pread(fd_, holder, sizeof holder - 1, 0);
        ::close(fd_);
        fd_ = -1;
        if (error != EWOULDBLOCK) throw Error(path + ": cannot lock (" + std::strerror(error) + ")");
        const std::string pid(holder, got > 0 ? std::strcspn(holder, "\n") : 0);
        throw Error("index " + dir + " is being written by " + (pid.empty() ? "another process" : "pid " + pid) +
                    "; try again when it is done");
      }
      // A build may have exchanged the directory while this waited on the old one's lock.
      struct stat locked {}, current {};
      if (::fstat(fd_, &locked) == 0 && ::stat(path.c_str(), &current) == 0 && locked.st_ino == current.st_ino &&
          locked.st_dev == current.st_dev)
        break;
      ::close(fd_);
    }
    // Not truncated first (a second writer in between would read no pid): it reads up to "\n".
    // Best effort: without the pid, the second writer's error says "another process".
    const auto pid = std::to_string(::getpid()) + "\n";
    [[maybe_unused]] const auto written = ::pwrite(fd_, pid.data(), pid.size(), 0);
  }
  ~WriterLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  int fd_ = -1;
};

// An output file written through a raw descriptor; every write checked.
class AppendFile {
 public:
  AppendFile() = default;
  AppendFile(const std::string& path, std::uint64_t keep_bytes, std::uint64_t hash) : path_(path), bytes_(keep_bytes), hash_(hash) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
    if (fd_ < 0) throw IoError(path + ": cannot open for writing (" + std::strerror(errno) + ")");
    // Bytes beyond the manifest's count are from an addition that never committed.
    if (::ftruncate(fd_, off_t(keep_bytes)) != 0 || ::lseek(fd_, off_t(keep_bytes), SEEK_SET) < 0)
      fail("cannot truncate");
  }
  AppendFile(AppendFile&& other) noexcept { *this = std::move(other); }
  AppendFile& operator=(AppendFile&& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(fd_, other.fd_);
    std::swap(bytes_, other.bytes_);
    std::swap(hash_, other.hash_);
    return *this;
  }
  ~AppendFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  void write(const void* data, std::size_t size) {
    hash_ = fnv1a64(data, size, hash_);
    const char* bytes = static_cast<const char*>(data);
    while (size > 0) {
      const auto written = ::write(fd_, bytes, size);
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) fail("write failed");
      bytes += written;
      size -= std::size_t(written);
      bytes_ += std::uint64_t(written);
    }
  }
  void sync() {
    if (::fsync(fd_) != 0) fail("cannot flush to disk");
  }
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t hash() const { return hash_; }

 private:
  [[noreturn]] void fail(const char* what) {
    throw IoError(path_ + ": " + what + " (" + std::strerror(errno) + ")");
  }
  std::string path_;
  int fd_ = -1;
  std::uint64_t bytes_ = 0;
  std::uint64_t hash_ = 0;
};

// A read-only mapping of the first `bytes` of a file.
class MappedFile {
 public:
  MappedFile(const std::string& path, std::uint64_t bytes) : bytes_(bytes) {
    if (bytes == 0) return;
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
    struct stat st {};
    if (::fstat(fd, &st) != 0 || std::uint64_t(st.st_size) < bytes) {
      ::close(fd);
      throw Error(path + ": truncated: " + std::to_string(st.st_size) + " bytes, the manifest counts " +
                  std::to_string(bytes));
    }
    address_ = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (address_ == MAP_FAILED) {
      address_ = nullptr;
      throw IoError(path + ": cannot map (" + std::strerror(errno) + ")");
    }
  }
  ~MappedFile() {
    if (address_) ::munmap(address_, bytes_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return static_cast<const char*>(address_); }

 private:
  void* address_ = nullptr;
  std::uint64_t bytes_ = 0;
};

torch::ScalarType scalar_type(StoreDType dtype) {
  return dtype == StoreDType::Float16 ? torch::kHalf : torch::kFloat32;
}

}  // namespace

bool is_index_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(dir) / "manifest.json", ec)) return false;
  try {
    const auto json = read_json_file(dir + "/manifest.json", "index manifest");
    return json.is_object() && json.value("format", "") == kIndexFormat;
  } catch (const Error&) {
    return false;
  }
}

std::string model_fingerprint(const std::string& model_dir) {
  std::uint64_t hash = hash_file(model_dir + "/config.json", fs::file_size(model_dir + "/config.json"));
  std::vector<fs::path> weights;
  for (const auto& entry : fs::directory_iterator(fs::path(model_dir) / "weights")) weights.push_back(entry.path());
  std::sort(weights.begin(), weights.end());
  for (const auto& path : weights) {
    const auto name = path.filename().string();
    hash = fnv1a64(name.data(), name.size(), hash);
    hash = hash_file(path.string(), fs::file_size(path), hash);
  }
  return checksum_hex(hash);
}

EncodedQuery encode_text_query(const Model& model, const std::string& text) {
  if (!model.vocabulary) throw Error("the model has no vocabulary: it cannot read text queries");
  EncodedQuery query;
  // The captions' policy (data/captions.h): invalid bytes read as U+FFFD, and said.
  query.text = valid_utf8(text, &query.replaced_invalid_utf8);
  const auto tokens = tokenize(query.text);
  if (tokens.empty()) throw Error("the query has no words");
  if (tokens.size() > kMaxCaptionTokens)
    throw Error("the query has " + std::to_string(tokens.size()) + " tokens, more than the limit of " +
                std::to_string(kMaxCaptionTokens));
  query.token_count = std::int64_t(tokens.size());
  for (const auto& token : tokens)
    if (!model.vocabulary->contains(token)) query.unknown_words.push_back(token);
  torch::NoGradGuard no_grad;
  const auto padded = pad_captions({model.vocabulary->encode_tokens(tokens)}, 0, 1);
  auto net = model.net;  // encoding changes no state, but LibTorch's forward() is not const
  query.caption = net->encode_captions(padded.ids, padded.lengths);
  if (net->global_head) query.global = net->global_head->embed_captions(query.caption).squeeze(0);
  return query;
}

// ---------------------------------------------------------------------------------------------
// Writing

struct IndexWriter::State {
  std::string dir;       // where the index lives (after commit)
  std::string work_dir;  // where files are written now
  bool creating = false;
  bool show_progress = true;
  Model model;
  Manifest manifest;
  std::int64_t committed_images = 0, committed_captions = 0;
  std::map<std::string, AppendFile> files;
  // The existing index's (create: when it replaces one); none for a new directory.
  std::unique_ptr<WriterLock> lock;

  AppendFile& file(const char* name) { return files.at(name); }

  void open_files() {
    for (const auto* name : kStoreFiles) {
      const auto& entry = manifest.files[name];
      files[name] = AppendFile(work_dir + "/" + name, entry.bytes, entry.hash);
    }
  }

  void write_globals(const char* name, const torch::Tensor& globals) {
    const auto data = globals.to(torch::kCPU, torch::kFloat32).contiguous();
    file(name).write(data.data_ptr<float>(), std::size_t(data.numel()) * 4);
  }
};

IndexWriter::IndexWriter(std::unique_ptr<State> state) : state_(std::move(state)) {}
IndexWriter::IndexWriter(IndexWriter&&) noexcept = default;
IndexWriter::~IndexWriter() {
  if (state_ && state_->creating) {
    state_->files.clear();
    remove_tree(state_->work_dir);
  }
}

IndexWriter IndexWriter::create(const std::string& dir, const std::string& model_dir, const IndexOptions& options) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !is_index_dir(dir))
    throw Error(dir + ": exists and is not an index directory; refusing to replace it");
  auto state = std::make_unique<State>();
  state->dir = dir;
  // The index replaced at commit must not be one that an `add` is writing.
  if (fs::exists(dir, ec)) state->lock = std::make_unique<WriterLock>(dir);
  state->work_dir = dir + ".tmp." + std::to_string(::getpid());
  state->creating = true;
  state->show_progress = options.show_progress;
  state->model = load_model(model_dir, parse_device(options.device));
  remove_abandoned_temporaries(dir);
  remove_tree(state->work_dir);
  fs::create_directories(state->work_dir, ec);
  if (ec) throw IoError(state->work_dir + ": cannot create (" + ec.message() + ")");
  try {
    save_model(state->work_dir + "/model", state->model);
    auto& m = state->manifest;
    m.model_fingerprint = model_fingerprint(state->work_dir + "/model");
    m.embed_size = state->model.config().embed_size;
    m.global_dim = state->model.config().global_head;
    m.faiss_factory = options.faiss_factory;
    m.store = options.store;
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
  state->lock = std::make_unique<WriterLock>(dir);
  state->manifest = read_manifest(dir);
  state->model = load_model(dir + "/model", parse_device(device));
  if (model_fingerprint(dir + "/model") != state->manifest.model_fingerprint)
    throw Error(dir + "/model: differs from the model the index was built with (fingerprint mismatch)");
  state->committed_images = state->manifest.images;
  state->committed_captions = state->manifest.captions;
  state->open_files();
  return IndexWriter(std::move(state));
}


void IndexWriter::add_images(const torch::Tensor& features) {
  auto& s = *state_;
  auto& m = s.manifest;
  if (features.dim() != 3) throw Error("image features must be (images, regions, features)");
  if (m.images + m.captions > 0 && m.regions != features.size(1))
    throw Error("images have " + std::to_string(features.size(1)) + " regions, the index holds images of " +
                std::to_string(m.regions));
  m.regions = features.size(1);
  torch::NoGradGuard no_grad;
  s.model.net->eval();
  const auto encoded = s.model.net->encode_images(features);
  const auto regions = encoded.regions.to(torch::kCPU, scalar_type(m.store)).contiguous();
  s.file("regions.bin").write(regions.data_ptr(), std::size_t(regions.numel()) * element_size(m.store));
  if (s.model.net->global_head) s.write_globals("image_globals.bin", s.model.net->global_head->embed_images(encoded));
  m.images += features.size(0);
}

void IndexWriter::add_captions(const TokenIds& ids, const std::vector<std::string>& texts) {
  auto& s = *state_;
  auto& m = s.manifest;
  if (ids.size() != texts.size()) throw Error("captions: ids and texts differ in count");
  // captions.txt holds one caption per line.
  for (std::size_t j = 0; j < texts.size(); ++j)
    if (texts[j].find('\n') != std::string::npos)
      throw Error("caption " + std::to_string(m.captions + std::int64_t(j)) + ": holds a line break");
  torch::NoGradGuard no_grad;
  s.model.net->eval();
  constexpr std::int64_t kBatch = 512;
  const auto count = std::int64_t(ids.size());
  if (m.captions == 0) {
    const std::int64_t zero = 0;
    s.file("word_offsets.bin").write(&zero, sizeof zero);
  }
  for (std::int64_t begin = 0; begin < count; begin += kBatch) {
    const auto n = std::min(kBatch, count - begin);
    const auto padded = pad_captions(ids, begin, n);
    const auto encoded = s.model.net->encode_captions(padded.ids, padded.lengths);
    const auto words = encoded.words.to(torch::kCPU, scalar_type(m.store)).contiguous();
    const auto row_bytes = std::size_t(m.embed_size) * element_size(m.store);
    const auto* rows = static_cast<const char*>(words.data_ptr());
    const auto caption_bytes = std::size_t(words.size(1)) * row_bytes;
    for (std::int64_t j = 0; j < n; ++j) {
      const auto length = std::int64_t(ids[std::size_t(begin + j)].size());
      s.file("words.bin").write(rows + std::size_t(j) * caption_bytes, std::size_t(length) * row_bytes);
      m.words += length;
      s.file("word_offsets.bin").write(&m.words, sizeof m.words);
      const auto& text = texts[std::size_t(begin + j)];
      s.file("captions.txt").write(text.data(), text.size());
      s.file("captions.txt").write("\n", 1);
    }
    if (s.model.net->global_head) s.write_globals("caption_globals.bin", s.model.net->global_head->embed_captions(encoded));
    m.captions += n;
  }
}

void IndexWriter::add_split(const PrecompSplit& split) {
  auto& s = *state_;
  auto& m = s.manifest;
  if (m.images > 0 && m.captions_per_image != split.captions_per_image())
    throw Error(split.captions_path() + ": " + std::to_string(split.captions_per_image()) +
                " captions per image, the index holds " + std::to_string(m.captions_per_image));
  if (m.captions != std::int64_t(m.captions_per_image) * m.images)
    throw Error(s.dir + ": its captions are not tied to its images; a split cannot be added");
  m.captions_per_image = split.captions_per_image();
  const auto data_dir = fs::path(split.features_path()).parent_path().string();
  const auto source_dir = fs::absolute(data_dir).string();
  for (const auto& source : m.sources)
    if (source.value("data", "") == source_dir && source.value("split", "") == split.name())
      throw Error(s.dir + ": already holds the " + split.name() + " split of " + source_dir +
                  "; adding it again would hold its items twice");
  const bool described = m.scenes == m.images && fs::exists(scenes_path(data_dir, split.name()));
  const auto scenes = described ? read_scenes(data_dir, split.name()) : std::vector<Scene>();
  if (described && std::int64_t(scenes.size()) != split.num_images())
    throw Error(scenes_path(data_dir, split.name()) + ": describes " + std::to_string(scenes.size()) + " images, the split has " +
                std::to_string(split.num_images()));
  split.require_feature_dim(s.model.config().img_dim);
  const auto ids = encode_caption_texts(*s.model.vocabulary, split.captions(), split.captions_path());
  const auto features = tensor_view(split.features());
  const auto N = split.num_images();
  {
    ProgressBar bar("indexing " + split.name() + " images", N, "images", s.show_progress);
    constexpr std::int64_t kBatch = 128;
    for (std::int64_t i = 0; i < N; i += kBatch) {
      const auto n = std::min(kBatch, N - i);
      const auto block = features.narrow(0, i, n);
      check_finite_features(block, i, split.features_path());
      add_images(block);
      bar.update(i + n);
    }
    bar.finish();
  }
  {
    const auto M = std::int64_t(ids.size());
    ProgressBar bar("indexing " + split.name() + " captions", M, "captions", s.show_progress);
    constexpr std::int64_t kBatch = 4096;
    for (std::int64_t j = 0; j < M; j += kBatch) {
      const auto n = std::min(kBatch, M - j);
      add_captions(TokenIds(ids.begin() + j, ids.begin() + j + n),
                   std::vector<std::string>(split.captions().begin() + j, split.captions().begin() + j + n));
      bar.update(j + n);
    }
    bar.finish();
  }
  const auto first_image = m.images - N;
  for (auto scene : scenes) {
    if (scene.twin >= 0) scene.twin += first_image;
    const auto line = scene_json(scene) + "\n";
    s.file("gallery_scenes.jsonl").write(line.data(), line.size());
    ++m.scenes;
  }
  m.sources.push_back({{"data", source_dir}, {"split", split.name()},
                       {"images", N}, {"captions", split.num_captions()}});
}

void IndexWriter::commit() {
  auto& s = *state_;
  auto& m = s.manifest;
  for (auto& [name, file] : s.files) {
    file.sync();
    m.files[name] = {file.bytes(), file.hash()};
  }
  const auto old_generation = m.generation;
  if (s.model.net->global_head) {
    if (m.faiss_factory.empty()) m.faiss_factory = default_faiss_factory(m.images);
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
        index = build_faiss_index(images ? m.faiss_factory : default_faiss_factory(total), all);
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
  write_file_atomically(s.work_dir + "/manifest.json", [&](std::ostream& out) { out << manifest_json(m).dump(2) << "\n"; });
  s.files.clear();
  if (s.creating) {
    std::error_code ec;
    if (fs::exists(s.dir, ec)) {
      // Exchanged, not renamed aside first: at every instant an index is at `dir`, and a kill
      // after the exchange leaves the old one as a temporary that the next build removes.
      if (::renameat2(AT_FDCWD, s.work_dir.c_str(), AT_FDCWD, s.dir.c_str(), RENAME_EXCHANGE) != 0)
        throw IoError(s.dir + ": cannot replace (" + std::strerror(errno) + ")");
      s.creating = false;
      remove_tree(s.work_dir);
    } else {
      fs::rename(s.work_dir, s.dir, ec);
      if (ec) throw IoError(s.dir + ": cannot move the new index into place (" + ec.message() + ")");
      s.creating = false;
    }
  } else if (old_generation > 0 && old_generation != m.generation) {
    std::error_code ec;
    for (const auto side : {GallerySide::Images, GallerySide::Captions})
      fs::remove(s.work_dir + "/" + faiss_file(old_generation, side == GallerySide::Images), ec);
  }
  s.committed_images = m.images;
  s.committed_captions = m.captions;
}

// ---------------------------------------------------------------------------------------------
// Reading

namespace {

class MappedStore final : public ItemStore {
 public:
  MappedStore(const std::string& dir, const Manifest& m)
      : m_(m),
        regions_(dir + "/regions.bin", std::uint64_t(m.images * m.regions * m.embed_size) * element_size(m.store)),
        words_(dir + "/words.bin", std::uint64_t(m.words * m.embed_size) * element_size(m.store)) {
    const std::string offsets_path = dir + "/word_offsets.bin";
    const auto offset_count = m.captions ? m.captions + 1 : 0;
    const MappedFile offsets(offsets_path, std::uint64_t(offset_count) * 8);
    offsets_.resize(std::size_t(offset_count));
    if (offset_count) std::memcpy(offsets_.data(), offsets.data(), offsets_.size() * 8);
    for (std::size_t j = 0; j + 1 < offsets_.size(); ++j)
      if (offsets_[j + 1] <= offsets_[j] || offsets_[j + 1] > m.words)
        throw Error(offsets_path + ": caption " + std::to_string(j) + " has a bad word range");
  }
  std::int64_t num_images() const override { return m_.images; }
  std::int64_t num_captions() const override { return m_.captions; }
  std::int64_t regions_per_image() const override { return m_.regions; }
  std::int64_t caption_length(std::int64_t id) const override {
    check_item_ids({id}, m_.captions, "caption");
    return offsets_[std::size_t(id) + 1] - offsets_[std::size_t(id)];
  }

  EncodedImages images(const std::vector<std::int64_t>& ids) const override {
    check_item_ids(ids, m_.images, "image");
    const auto R = m_.regions, d = m_.embed_size;
    auto out = torch::empty({std::int64_t(ids.size()), R, d}, scalar_type(m_.store));
    const auto item_bytes = std::size_t(R * d) * element_size(m_.store);
    auto* target = static_cast<char*>(out.data_ptr());
    for (std::size_t i = 0; i < ids.size(); ++i)
      std::memcpy(target + i * item_bytes, regions_.data() + std::size_t(ids[i]) * item_bytes, item_bytes);
    return {out.to(torch::kFloat32), torch::Tensor()};
  }

  EncodedCaptions captions(const std::vector<std::int64_t>& ids) const override {
    check_item_ids(ids, m_.captions, "caption");
    const auto d = m_.embed_size;
    auto lengths = torch::empty({std::int64_t(ids.size())}, torch::kInt64);
    std::int64_t longest = 1;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto length = offsets_[std::size_t(ids[i]) + 1] - offsets_[std::size_t(ids[i])];
      lengths[std::int64_t(i)] = length;
      longest = std::max(longest, length);
    }
    auto out = torch::zeros({std::int64_t(ids.size()), longest, d}, scalar_type(m_.store));
    const auto row_bytes = std::size_t(d) * element_size(m_.store);
    auto* target = static_cast<char*>(out.data_ptr());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto begin = offsets_[std::size_t(ids[i])], end = offsets_[std::size_t(ids[i]) + 1];
      std::memcpy(target + i * std::size_t(longest) * row_bytes, words_.data() + std::size_t(begin) * row_bytes,
                  std::size_t(end - begin) * row_bytes);
    }
    return {out.to(torch::kFloat32), lengths};
  }

 private:
  Manifest m_;
  MappedFile regions_, words_;
  std::vector<std::int64_t> offsets_;
};

}  // namespace

struct GalleryIndex::Impl {
  std::string dir;
  Manifest manifest;
  Model model;
  std::shared_ptr<MappedStore> store;
  std::unique_ptr<MappedFile> image_globals, caption_globals;
  std::shared_ptr<faiss::Index> image_faiss, caption_faiss;
  std::vector<std::string> captions;
  std::vector<Scene> scenes;
};

GalleryIndex::GalleryIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GalleryIndex::~GalleryIndex() = default;

namespace {

std::shared_ptr<GalleryIndex> open_committed(const std::string& dir, Manifest manifest, torch::Device device,
                                             const std::string& expected_model) {
  auto impl = std::make_unique<GalleryIndex::Impl>();
  impl->dir = dir;
  impl->manifest = std::move(manifest);
  const auto& m = impl->manifest;
  const auto fingerprint = model_fingerprint(dir + "/model");
  if (fingerprint != m.model_fingerprint)
    throw Error(dir + "/model: differs from the model the index was built with (fingerprint mismatch)");
  if (!expected_model.empty() && model_fingerprint(expected_model) != fingerprint)
    throw Error(dir + ": was built with another model than " + expected_model + " (fingerprint mismatch)");
  impl->model = load_model(dir + "/model", device);
  if (impl->model.config().embed_size != m.embed_size || impl->model.config().global_head != m.global_dim)
    throw Error(dir + "/manifest.json: sizes disagree with the index's model");
  impl->store = std::make_shared<MappedStore>(dir, m);
  // Only the bytes the manifest counts: what follows is an addition that never committed (a kill
  // mid-add), which the next addition truncates.
  const auto line_count = [&](const std::string& name, std::int64_t count, const char* items) {
    const auto text = read_committed(dir + "/" + name, m.files.at(name).bytes);
    const auto lines = std::int64_t(std::count(text.begin(), text.end(), '\n'));
    if (lines != count)
      throw Error(dir + "/" + name + ": " + std::to_string(lines) + " " + items + ", the manifest counts " +
                  std::to_string(count));
    return text;
  };
  line_count("captions.txt", m.captions, "captions");
  impl->captions = read_captions(dir + "/captions.txt");
  impl->captions.resize(std::size_t(m.captions));
  const auto scenes_text = line_count("gallery_scenes.jsonl", m.scenes, "scenes");
  if (m.images > 0 && m.scenes == m.images) {
    const auto path = scenes_path(dir, kScenesSplit);
    std::istringstream in(scenes_text);
    impl->scenes = parse_scenes(in, path);
    if (std::int64_t(impl->scenes.size()) != m.images)
      throw Error(path + ": describes " + std::to_string(impl->scenes.size()) + " images, the manifest counts " +
                  std::to_string(m.images));
  }
  if (m.global_dim > 0 && m.generation > 0) {
    impl->image_globals = std::make_unique<MappedFile>(dir + "/image_globals.bin", std::uint64_t(m.images * m.global_dim) * 4);
    impl->caption_globals = std::make_unique<MappedFile>(dir + "/caption_globals.bin", std::uint64_t(m.captions * m.global_dim) * 4);
    impl->image_faiss = read_faiss_index(dir + "/" + faiss_file(m.generation, true));
    impl->caption_faiss = read_faiss_index(dir + "/" + faiss_file(m.generation, false));
    if (faiss_index_size(*impl->image_faiss) != m.images || faiss_index_size(*impl->caption_faiss) != m.captions ||
        faiss_index_dim(*impl->image_faiss) != m.global_dim || faiss_index_dim(*impl->caption_faiss) != m.global_dim)
      throw Error(dir + ": its FAISS indexes do not hold the manifest's item counts and sizes");
  }
  return std::make_shared<GalleryIndex>(std::move(impl));
}

}  // namespace

std::shared_ptr<GalleryIndex> GalleryIndex::open(const std::string& dir, torch::Device device,
                                                 const std::string& expected_model) {
  // An `add` that commits while this reads removes the FAISS files of the generation read here:
  // then the new manifest is read again. A few tries: adds do not commit that often.
  for (int attempt = 1;; ++attempt) {
    auto manifest = read_manifest(dir);
    const auto generation = manifest.generation;
    try {
      return open_committed(dir, std::move(manifest), device, expected_model);
    } catch (const Error&) {
      if (attempt == 3 || read_manifest(dir).generation == generation) throw;
    }
  }
}

const std::string& GalleryIndex::dir() const { return impl_->dir; }
const Model& GalleryIndex::model() const { return impl_->model; }
std::int64_t GalleryIndex::num_images() const { return impl_->manifest.images; }
std::int64_t GalleryIndex::num_captions() const { return impl_->manifest.captions; }
int GalleryIndex::captions_per_image() const { return impl_->manifest.captions_per_image; }
bool GalleryIndex::has_shortlist() const { return impl_->image_faiss != nullptr; }
std::string GalleryIndex::faiss_factory() const { return has_shortlist() ? impl_->manifest.faiss_factory : ""; }
std::string GalleryIndex::store_dtype() const { return to_string(impl_->manifest.store); }
const std::vector<std::string>& GalleryIndex::caption_texts() const { return impl_->captions; }
const std::vector<Scene>& GalleryIndex::scenes() const { return impl_->scenes; }
std::shared_ptr<const ItemStore> GalleryIndex::store() const { return impl_->store; }

torch::Tensor GalleryIndex::image_globals() const {
  if (!impl_->image_globals) return {};
  const auto& m = impl_->manifest;
  return torch::from_blob(const_cast<char*>(impl_->image_globals->data()), {m.images, m.global_dim}, torch::kFloat32);
}

torch::Tensor GalleryIndex::caption_globals() const {
  if (!impl_->caption_globals) return {};
  const auto& m = impl_->manifest;
  return torch::from_blob(const_cast<char*>(impl_->caption_globals->data()), {m.captions, m.global_dim}, torch::kFloat32);
}

std::shared_ptr<const Searcher> GalleryIndex::stage1(GallerySide side) const {
  if (!has_shortlist())
    throw Error(impl_->dir + ": its model has no global head, so the index has no shortlist; search it with "
                "--shortlist 0 or rebuild it from a model trained with --global-weight or imram train-global");
  return std::make_shared<FaissShortlist>(side == GallerySide::Images ? impl_->image_faiss : impl_->caption_faiss, side);
}

std::shared_ptr<const Searcher> GalleryIndex::searcher(GallerySide side, std::int64_t shortlist,
                                                       std::int64_t prefilter) const {
  if (shortlist <= 0) return std::make_shared<ExhaustiveSearcher>(impl_->model.net, impl_->store, side);
  return std::make_shared<RerankSearcher>(stage1(side), shortlist, impl_->model.net, impl_->store, prefilter);
}

EncodedQuery GalleryIndex::text_query(const std::string& text) const { return encode_text_query(impl_->model, text); }

EncodedQuery GalleryIndex::image_query(std::int64_t image) const {
  if (image < 0 || image >= num_images())
    throw Error("image " + std::to_string(image) + ": out of range, the index holds " + std::to_string(num_images()) +
                " images");
  EncodedQuery query;
  const auto device = impl_->model.net->parameters().front().device();
  query.image = impl_->store->images({image});
  query.image.regions = query.image.regions.to(device);
  if (impl_->image_globals) query.global = image_globals()[image].clone();
  return query;
}

void GalleryIndex::verify() const {
  for (const auto& [name, entry] : impl_->manifest.files) {
    const std::string path = impl_->dir + "/" + name;
    if (hash_file(path, entry.bytes) != entry.hash) throw Error(path + ": checksum mismatch: the file is corrupt");
  }
}

}  // namespace imram
