#include "imram/search/index_manifest.h"

#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <limits>

#include "imram/error.h"
#include "imram/util/json_file.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

std::uint64_t parse_hex(const std::string& text, const std::string& source) {
  try {
    std::size_t used = 0;
    const auto value = std::stoull(text, &used, 16);
    if (used == text.size() && !text.empty()) return value;
  } catch (const std::exception&) {
  }
  throw Error(source + ": checksum '" + text + "' is not a hexadecimal number");
}

// The bytes a store file must hold for the manifest's counts: the product of `factors`.
std::uint64_t expected_bytes(const std::string& path, const char* file, std::initializer_list<std::uint64_t> factors) {
  std::uint64_t bytes = 1;
  for (const auto factor : factors)
    if (__builtin_mul_overflow(bytes, factor, &bytes))
      throw Error(path + ": bad index manifest (the counts of " + file + " overflow)");
  return bytes;
}

// Cheap, before anything is mapped: every count agrees with the committed size of the file
// that holds the items, so that a wrong count cannot read past a file or misread it.
void check_counts(const Manifest& m, const std::string& path) {
  // Counts are read as non-negative int64: as uint64, captions + 1 cannot overflow.
  const auto images = std::uint64_t(m.images), captions = std::uint64_t(m.captions), words = std::uint64_t(m.words),
             described = std::uint64_t(m.described), regions = std::uint64_t(m.regions),
             d = std::uint64_t(m.embed_size), g = std::uint64_t(m.global_dim),
             element = std::uint64_t(element_size(m.store));
  const auto check_entries = [&](std::initializer_list<std::pair<const char*, std::uint64_t>> entries) {
    for (const auto& [name, bytes] : entries) {
      if (!m.files.count(name)) throw Error(path + ": bad index manifest (no entry for " + std::string(name) + ")");
      if (m.files.at(name).bytes != bytes)
        throw Error(path + ": bad index manifest (" + name + " holds " + std::to_string(m.files.at(name).bytes) +
                    " bytes, its counts need " + std::to_string(bytes) + ")");
    }
  };
  if (m.exact_store)
    check_entries({{"regions.bin", expected_bytes(path, "regions.bin", {images, regions, d, element})},
                   {"words.bin", expected_bytes(path, "words.bin", {words, d, element})}});
  else if (m.residual_bits == 0)
    throw Error(path + ": bad index manifest (no exact store and no residuals to decode fragments from)");
  const std::pair<const char*, std::uint64_t> sizes[] = {
      {"word_offsets.bin", expected_bytes(path, "word_offsets.bin", {captions ? captions + 1 : 0, 8})},
      {"image_globals.bin", expected_bytes(path, "image_globals.bin", {images, g, 4})},
      {"caption_globals.bin", expected_bytes(path, "caption_globals.bin", {captions, g, 4})},
      {"thumbnail_offsets.bin", expected_bytes(path, "thumbnail_offsets.bin", {described ? described + 1 : 0, 8})},
  };
  const auto halves = std::uint64_t(m.memory_halves);
  const std::pair<const char*, std::uint64_t> halves_sizes[] = {
      {"region_halves.bin", expected_bytes(path, "region_halves.bin", {images, regions, halves, element})},
      {"word_halves.bin", expected_bytes(path, "word_halves.bin", {words, halves, element})},
  };
  if (m.memory_halves > 0)
    for (const auto& [name, bytes] : halves_sizes) {
      if (!m.files.count(name)) throw Error(path + ": bad index manifest (no entry for " + std::string(name) + ")");
      if (m.files.at(name).bytes != bytes)
        throw Error(path + ": bad index manifest (" + name + " holds " + std::to_string(m.files.at(name).bytes) +
                    " bytes, its counts need " + std::to_string(bytes) + ")");
    }
  if (m.codes) {
    const std::pair<const char*, std::uint64_t> code_sizes[] = {
        {"region_codes.bin", expected_bytes(path, "region_codes.bin", {images, regions, 4})},
        {"region_grams.bin", expected_bytes(path, "region_grams.bin", {images, regions, regions, element})},
        {"word_codes.bin", expected_bytes(path, "word_codes.bin", {words, 4})},
        {"region_codebook.bin", expected_bytes(path, "region_codebook.bin", {std::uint64_t(m.region_centroids), d, 4})},
        {"word_codebook.bin", expected_bytes(path, "word_codebook.bin", {std::uint64_t(m.word_centroids), d, 4})},
    };
    for (const auto& [name, bytes] : code_sizes) {
      if (!m.files.count(name)) throw Error(path + ": bad index manifest (no entry for " + std::string(name) + ")");
      if (m.files.at(name).bytes != bytes)
        throw Error(path + ": bad index manifest (" + name + " holds " + std::to_string(m.files.at(name).bytes) +
                    " bytes, its counts need " + std::to_string(bytes) + ")");
    }
    if (m.residual_bits > 0) {
      if (!residual_bits_fit(m.residual_bits, m.embed_size))
        throw Error(path + ": bad index manifest (residuals of " + std::to_string(m.residual_bits) +
                    " bits for d = " + std::to_string(m.embed_size) + ")");
      const auto row = std::uint64_t(m.embed_size * m.residual_bits / 8);
      check_entries({{"region_residuals.bin", expected_bytes(path, "region_residuals.bin", {images, regions, row})},
                     {"word_residuals.bin", expected_bytes(path, "word_residuals.bin", {words, row})}});
      // A side's buckets come with its codebook.
      const auto check_buckets = [&](const ResidualBuckets& buckets, std::int64_t centroids, const char* side) {
        if (centroids == 0 && buckets.bits == 0) return;
        if (buckets.bits != m.residual_bits)
          throw Error(path + ": bad index manifest (the " + side + "' residual buckets are not of " +
                      std::to_string(m.residual_bits) + " bits)");
        buckets.check(path + ": bad index manifest (the " + side + "' residual buckets)");
      };
      check_buckets(m.region_buckets, m.region_centroids, "regions");
      check_buckets(m.word_buckets, m.word_centroids, "words");
    }
    // A caption's Gram matrix is its length squared: checked against the offsets once they are read.
    if (!m.files.count("word_grams.bin")) throw Error(path + ": bad index manifest (no entry for word_grams.bin)");
    if ((m.images > 0 && m.region_centroids == 0) || (m.words > 0 && m.word_centroids == 0))
      throw Error(path + ": bad index manifest (codes without a codebook)");
  }
  for (const auto& [name, bytes] : sizes)
    if (m.files.at(name).bytes != bytes)
      throw Error(path + ": bad index manifest (" + name + " holds " + std::to_string(m.files.at(name).bytes) +
                  " bytes, its counts need " + std::to_string(bytes) + ")");
  if (m.images > 0 && m.regions == 0) throw Error(path + ": bad index manifest (images of 0 regions)");
  if (m.captions_per_image > 0 && m.captions != std::int64_t(m.captions_per_image) * m.images)
    throw Error(path + ": bad index manifest (" + std::to_string(m.captions) + " captions are not " +
                std::to_string(m.captions_per_image) + " per image of " + std::to_string(m.images) + ")");
  if (m.described > m.images)
    throw Error(path + ": bad index manifest (" + std::to_string(m.described) + " described images for " +
                std::to_string(m.images) + " images)");
  if (m.global_dim > 0 && m.generation > 0)
    for (const bool images : {true, false})
      if (!m.files.count(faiss_file(m.generation, images)))
        throw Error(path + ": bad index manifest (no entry for " + faiss_file(m.generation, images) + ")");
}

// A count: a non-negative integer (a JSON 500.5 would read as 500).
std::int64_t read_count(const nlohmann::json& json, const char* key, const std::string& path) {
  const auto& value = json.at(key);
  if (!value.is_number_integer() || value.get<std::int64_t>() < 0)
    throw Error(path + ": bad index manifest (\"" + key + "\" must be a non-negative integer, got " + value.dump() +
                ")");
  return value.get<std::int64_t>();
}

// A side's residual buckets: absent (bits 0) until the side's codebook is learned.
ResidualBuckets read_buckets(const nlohmann::json& codes, const char* key, const std::string& path) {
  ResidualBuckets buckets;
  if (!codes.contains(key)) return buckets;
  const auto& json = codes.at(key);
  const auto numbers = [&](const char* field) {
    const auto& list = json.at(field);
    if (!list.is_array()) throw Error(path + ": bad index manifest (" + key + "." + field + " must be a list)");
    std::vector<float> out;
    for (const auto& value : list) {
      if (!value.is_number()) throw Error(path + ": bad index manifest (" + key + "." + field + " holds a non-number)");
      out.push_back(value.get<float>());
    }
    return out;
  };
  const auto bits = read_count(json, "bits", path);
  if (bits > 8) throw Error(path + ": bad index manifest (" + key + " of " + std::to_string(bits) + " bits)");
  buckets.bits = int(bits);
  buckets.cutoffs = numbers("cutoffs");
  buckets.values = numbers("values");
  return buckets;
}

nlohmann::ordered_json buckets_json(const ResidualBuckets& buckets) {
  return {{"bits", buckets.bits}, {"cutoffs", buckets.cutoffs}, {"values", buckets.values}};
}

}  // namespace

std::string checksum_hex(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

std::string to_string(StoreDType dtype) { return dtype == StoreDType::Float16 ? "float16" : "float32"; }

StoreDType parse_store_dtype(const std::string& text) {
  if (text == "float16") return StoreDType::Float16;
  if (text == "float32") return StoreDType::Float32;
  throw Error("store dtype '" + text + "' is not one of float16, float32");
}

std::size_t element_size(StoreDType dtype) { return dtype == StoreDType::Float16 ? 2 : 4; }

std::string faiss_file(std::int64_t generation, bool images) {
  return std::string(images ? "images." : "captions.") + std::to_string(generation) + ".faiss";
}

nlohmann::ordered_json manifest_json(const Manifest& m) {
  nlohmann::ordered_json files;
  for (const auto& [name, entry] : m.files)
    files[name] = {{"bytes", entry.bytes}, {"fnv1a64", checksum_hex(entry.hash)}};
  nlohmann::ordered_json json{{"format", kIndexFormat},
                              {"version", kIndexFormatVersion},
                              {"model_fingerprint", m.model_fingerprint},
                              {"images", m.images},
                              {"captions", m.captions},
                              {"words", m.words},
                              {"described", m.described},
                              {"regions", m.regions},
                              {"embed_size", m.embed_size},
                              {"global_dim", m.global_dim},
                              {"captions_per_image", m.captions_per_image},
                              {"faiss_factory", m.faiss_factory},
                              {"store_dtype", to_string(m.store)},
                              {"generation", m.generation},
                              {"sources", m.sources},
                              {"files", files}};
  // Written only when stored, so that indexes without halves keep the manifest they had.
  if (m.memory_halves > 0) json["memory_halves"] = m.memory_halves;
  if (m.codes) {
    json["codes"] = {{"region_centroids", m.region_centroids}, {"word_centroids", m.word_centroids}};
    if (m.residual_bits > 0) {
      json["codes"]["residual_bits"] = m.residual_bits;
      if (m.region_buckets.bits > 0) json["codes"]["region_buckets"] = buckets_json(m.region_buckets);
      if (m.word_buckets.bits > 0) json["codes"]["word_buckets"] = buckets_json(m.word_buckets);
    }
  }
  if (!m.exact_store) json["exact_store"] = false;
  return json;
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  if (!fs::is_directory(dir)) throw Error(dir + ": index directory does not exist");
  if (!fs::exists(path)) throw Error(dir + ": not an index directory (no manifest.json)");
  const auto json = read_json_file(path, "index manifest");
  Manifest m;
  try {
    if (json.at("format") != kIndexFormat) throw Error(path + ": not an imram index manifest");
    const auto version = read_count(json, "version", path);
    if (version < kOldestIndexFormatVersion || version > kIndexFormatVersion)
      throw Error(path + ": index format version " + std::to_string(version) + ", this imram reads versions " +
                  std::to_string(kOldestIndexFormatVersion) + " to " + std::to_string(kIndexFormatVersion) +
                  "; rebuild the index");
    m.model_fingerprint = json.at("model_fingerprint");
    m.images = read_count(json, "images", path);
    m.captions = read_count(json, "captions", path);
    m.words = read_count(json, "words", path);
    m.described = read_count(json, "described", path);
    m.regions = read_count(json, "regions", path);
    m.embed_size = read_count(json, "embed_size", path);
    m.global_dim = read_count(json, "global_dim", path);
    const auto captions_per_image = read_count(json, "captions_per_image", path);
    if (captions_per_image > std::numeric_limits<int>::max())
      throw Error(path + ": bad index manifest (captions_per_image " + std::to_string(captions_per_image) + ")");
    m.captions_per_image = int(captions_per_image);
    m.faiss_factory = json.at("faiss_factory");
    const std::string store = json.at("store_dtype");
    if (store != "float16" && store != "float32")
      throw Error(path + ": bad index manifest (store_dtype \"" + store + "\" is not float16 or float32)");
    m.store = parse_store_dtype(store);
    m.generation = read_count(json, "generation", path);
    if (json.contains("memory_halves")) m.memory_halves = read_count(json, "memory_halves", path);
    if (json.contains("codes")) {
      const auto& codes = json.at("codes");
      if (!codes.is_object()) throw Error(path + ": bad index manifest (\"codes\" must be an object)");
      m.codes = true;
      m.region_centroids = read_count(codes, "region_centroids", path);
      m.word_centroids = read_count(codes, "word_centroids", path);
      if (codes.contains("residual_bits")) {
        const auto bits = read_count(codes, "residual_bits", path);
        if (bits > 8) throw Error(path + ": bad index manifest (residuals of " + std::to_string(bits) + " bits)");
        m.residual_bits = int(bits);
        m.region_buckets = read_buckets(codes, "region_buckets", path);
        m.word_buckets = read_buckets(codes, "word_buckets", path);
      }
    }
    if (json.contains("exact_store")) {
      if (!json.at("exact_store").is_boolean())
        throw Error(path + ": bad index manifest (\"exact_store\" must be true or false)");
      m.exact_store = json.at("exact_store").get<bool>();
    }
    m.sources = json.at("sources");
    if (!m.sources.is_array()) throw Error(path + ": bad index manifest (\"sources\" must be an array)");
    for (const auto& source : m.sources)
      if (!source.is_object()) throw Error(path + ": bad index manifest (a source must be an object)");
    for (const auto& [name, entry] : json.at("files").items()) {
      if (!entry.at("bytes").is_number_unsigned())
        throw Error(path + ": bad index manifest (the bytes of " + name + " must be a non-negative integer)");
      m.files[name] = {entry.at("bytes").get<std::uint64_t>(), parse_hex(entry.at("fnv1a64"), path)};
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": bad index manifest (" + e.what() + ")");
  }
  if (m.embed_size < 1) throw Error(path + ": bad index manifest (embed_size 0)");
  for (const auto* name : kStoreFiles)
    if (!m.files.count(name)) throw Error(path + ": bad index manifest (no entry for " + name + ")");
  check_counts(m, path);
  return m;
}

}  // namespace imram
