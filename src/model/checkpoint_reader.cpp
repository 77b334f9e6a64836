// torch.save's two containers around the restricted unpickler (data/pickle.h); what is accepted
// and why is in docs/checkpoints.md.
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <map>

#include "imram/data/pickle.h"
#include "imram/error.h"
#include "imram/model/checkpoint.h"

namespace imram {

namespace {

struct StorageType {
  const char* name;
  torch::ScalarType dtype;
};
constexpr StorageType kStorageTypes[] = {
    {"Float", torch::kFloat32}, {"Double", torch::kFloat64}, {"Half", torch::kFloat16}, {"BFloat16", torch::kBFloat16},
    {"Long", torch::kInt64},    {"Int", torch::kInt32},      {"Short", torch::kInt16},  {"Char", torch::kInt8},
    {"Byte", torch::kUInt8},    {"Bool", torch::kBool}};

torch::ScalarType storage_dtype(const std::string& name, const std::string& source) {
  for (const auto& type : kStorageTypes)
    if (name == type.name) return type.dtype;
  throw Error(source + ": unknown storage type '" + name + "Storage'");
}

// torch.save's persistent id: ('storage', torch.<T>Storage, key, location, numel[, view]).
// The legacy format adds a sixth entry, the view metadata, None for every storage that is not a
// view; views (a PyTorch 0.x feature) are refused.
PickleRef load_storage(PickleDocument& doc, PickleRef pid, const std::string& source) {
  const auto& n = doc.node(pid);
  auto bad = [&](const std::string& why) -> Error { return Error(source + ": a storage reference " + why); };
  if (n.kind != PickleKind::Tuple || (n.items.size() != 5 && n.items.size() != 6))
    throw bad("is not a tuple of 5 or 6 entries");
  const auto& tag = doc.node(n.items[0]);
  const auto& type = doc.node(n.items[1]);
  const auto& key = doc.node(n.items[2]);
  const auto& location = doc.node(n.items[3]);
  const auto& numel = doc.node(n.items[4]);
  if (tag.kind != PickleKind::String || tag.text != "storage") throw bad("is not tagged 'storage'");
  const std::string prefix = "torch.", suffix = "Storage";
  if (type.kind != PickleKind::Global || type.text.size() <= prefix.size() + suffix.size() ||
      type.text.compare(type.text.size() - suffix.size(), suffix.size(), suffix) != 0)
    throw bad("does not name a storage type");
  if (key.kind != PickleKind::String || location.kind != PickleKind::String)
    throw bad("has a key or location that is not a string");
  if (numel.kind != PickleKind::Int || numel.integer < 0)
    throw bad("has an element count that is not a non-negative integer");
  if (n.items.size() == 6 && doc.node(n.items[5]).kind != PickleKind::None)
    throw bad("is a view into another storage (PyTorch 0.x), which is not supported");
  PickleStorage storage;
  storage.dtype = type.text.substr(prefix.size(), type.text.size() - prefix.size() - suffix.size());
  storage_dtype(storage.dtype, source);
  storage.key = key.text;
  storage.location = location.text;
  storage.numel = numel.integer;
  return doc.add_storage(std::move(storage));
}

// a * b, or nullopt when it overflows int64.
std::optional<std::int64_t> checked_mul(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// The bytes of each storage key, once the container has found them.
struct StorageBytes {
  const std::uint8_t* data = nullptr;
  std::int64_t numel = 0;
};

torch::Tensor build_tensor(const PickleDocument& doc, PickleRef ref, const std::map<std::string, StorageBytes>& bytes,
                           const std::string& name, const std::string& source) {
  const auto& t = doc.tensor(ref);
  const auto& s = doc.storage(t.storage);
  const std::string what = source + ": tensor '" + name + "'";
  const auto found = bytes.find(s.key);
  if (found == bytes.end()) throw Error(what + ": its storage '" + s.key + "' is not in the file");
  const auto dtype = storage_dtype(s.dtype, source);
  const std::int64_t numel = found->second.numel;
  // The highest element the view reads must lie inside the storage.
  std::int64_t last = t.offset;
  bool empty = false;
  for (std::size_t i = 0; i < t.sizes.size(); ++i) {
    if (t.sizes[i] == 0) empty = true;
    const auto reach = checked_mul(t.sizes[i] == 0 ? 0 : t.sizes[i] - 1, t.strides[i]);
    if (!reach || __builtin_add_overflow(last, *reach, &last)) throw Error(what + ": its size and stride overflow");
  }
  std::int64_t count = 1;
  for (auto size : t.sizes) {
    const auto product = checked_mul(count, size);
    if (!product) throw Error(what + ": its size overflows");
    count = *product;
  }
  if (!empty && last >= numel)
    throw Error(what + ": reads element " + std::to_string(last) + " of a storage of " + std::to_string(numel));
  // Stride 0 would let a few stored elements stand for any number: a weight never does that,
  // and copying such a tensor out could allocate without bound.
  if (count > numel)
    throw Error(what + ": has " + std::to_string(count) + " elements, more than its storage's " +
                std::to_string(numel));
  const auto storage =
      torch::from_blob(const_cast<std::uint8_t*>(found->second.data), {numel}, torch::TensorOptions().dtype(dtype));
  if (empty) return torch::empty(t.sizes, torch::TensorOptions().dtype(dtype));
  return storage.as_strided(t.sizes, t.strides, t.offset).clone(at::MemoryFormat::Contiguous);
}

nlohmann::json plain_value(const PickleDocument& doc, PickleRef ref) {
  const auto& n = doc.node(ref);
  switch (n.kind) {
    case PickleKind::None:
      return nullptr;
    case PickleKind::Bool:
      return n.boolean;
    case PickleKind::Int:
      return n.integer;
    case PickleKind::Float:
      return n.number;
    case PickleKind::String:
      return n.text;
    default:
      return nlohmann::json();  // containers, tensors: not options a model needs
  }
}

// Tensors are copied out of their storages. Views may share a storage, but a few bytes of pickle
// must not be able to copy one large storage many times over: the copies together may hold at
// most kMaxCopiesPerStoredElement times the elements stored. The same tensor object is copied once.
constexpr std::int64_t kMaxCopiesPerStoredElement = 4;

Checkpoint convert(const PickleDocument& doc, PickleRef root, const std::map<std::string, StorageBytes>& bytes,
                   const std::string& format, const std::string& source) {
  std::int64_t stored = 0, copied = 0;
  for (const auto& entry : bytes) stored += entry.second.numel;
  std::map<PickleRef, torch::Tensor> built;
  const auto& top = doc.node(root);
  if (top.kind != PickleKind::Dict)
    throw Error(source + ": holds " + pickle_kind_name(top.kind) + ", not the dict a training checkpoint is");
  Checkpoint checkpoint;
  checkpoint.format = format;
  for (std::size_t i = 0; i + 1 < top.items.size(); i += 2) {
    const auto& key = doc.node(top.items[i]);
    if (key.kind != PickleKind::String) throw Error(source + ": a top-level key is not a string");
    checkpoint.top_level_keys.push_back(key.text);
    const auto value = top.items[i + 1];
    const auto& v = doc.node(value);
    if (key.text == "model") {
      if (v.kind != PickleKind::Dict)
        throw Error(source + ": 'model' is " + pickle_kind_name(v.kind) + ", not a state dict");
      for (std::size_t j = 0; j + 1 < v.items.size(); j += 2) {
        const auto& name = doc.node(v.items[j]);
        const auto tensor = v.items[j + 1];
        if (name.kind != PickleKind::String) throw Error(source + ": a state-dict key is not a string");
        if (doc.node(tensor).kind != PickleKind::Tensor)
          throw Error(source + ": state-dict entry '" + name.text + "' is " + pickle_kind_name(doc.node(tensor).kind) +
                      ", not a tensor");
        auto found = built.find(tensor);
        if (found == built.end()) {
          auto value = build_tensor(doc, tensor, bytes, name.text, source);
          copied += value.numel();
          if (copied > kMaxCopiesPerStoredElement * stored + 1024)
            throw Error(source + ": the tensors read their storages more than " +
                        std::to_string(kMaxCopiesPerStoredElement) + " times over");
          found = built.emplace(tensor, std::move(value)).first;
        }
        checkpoint.state_dict.emplace_back(name.text, found->second);
      }
    } else if (key.text == "opt") {
      if (v.kind != PickleKind::Namespace && v.kind != PickleKind::Dict)
        throw Error(source + ": 'opt' is " + pickle_kind_name(v.kind) + ", not the options namespace");
      nlohmann::json options = nlohmann::json::object();
      const auto& attributes = v.kind == PickleKind::Namespace && !v.items.empty() ? doc.node(v.items[0]) : v;
      if (attributes.kind == PickleKind::Dict) {
        for (std::size_t j = 0; j + 1 < attributes.items.size(); j += 2) {
          const auto& name = doc.node(attributes.items[j]);
          if (name.kind != PickleKind::String) throw Error(source + ": an option name in 'opt' is not a string");
          options[name.text] = plain_value(doc, attributes.items[j + 1]);
        }
      }
      checkpoint.options = std::move(options);
    } else {
      const auto plain = plain_value(doc, value);
      if (!plain.is_null() || v.kind == PickleKind::None) checkpoint.metadata[key.text] = plain;
    }
  }
  return checkpoint;
}

std::string first_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

// ---- legacy container ----

constexpr std::uint8_t kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

Checkpoint read_legacy(const std::uint8_t* data, std::size_t size, const std::string& source) {
  // The magic number is a LONG1 of 10 bytes, wider than the unpickler's integers: compare bytes.
  constexpr std::size_t kMagicPickle = 15;  // PROTO 2, LONG1 10 <magic>, STOP
  if (size < kMagicPickle || std::memcmp(data, "\x80\x02\x8a\x0a", 4) != 0 ||
      std::memcmp(data + 4, kLegacyMagic, sizeof kLegacyMagic) != 0 || data[14] != '.')
    throw Error(source + ": not a torch.save file (wrong magic number)");
  PickleDocument doc;
  std::size_t offset = kMagicPickle;
  const auto protocol = read_pickle(doc, data, size, &offset, source, {});
  if (doc.node(protocol).kind != PickleKind::Int || doc.node(protocol).integer != 1001)
    throw Error(source + ": unsupported torch.save protocol version (expected 1001)");
  const auto sys_info = read_pickle(doc, data, size, &offset, source, {});
  const auto* little_endian = doc.find(sys_info, "little_endian");
  if (!little_endian || doc.node(*little_endian).kind != PickleKind::Bool || !doc.node(*little_endian).boolean)
    throw Error(source + ": written on a big-endian machine, or without its system information");
  const auto root = read_pickle(doc, data, size, &offset, source,
                                [&](PickleDocument& d, PickleRef pid) { return load_storage(d, pid, source); });
  const auto keys = read_pickle(doc, data, size, &offset, source, {});
  const auto& key_list = doc.node(keys);
  if (key_list.kind != PickleKind::List) throw Error(source + ": the storage key list is missing");

  std::map<std::string, std::string> dtype_of_key;
  for (const auto& storage : doc.storages()) {
    const auto [it, inserted] = dtype_of_key.emplace(storage.key, storage.dtype);
    if (!inserted && it->second != storage.dtype)
      throw Error(source + ": storage '" + storage.key + "' is referenced with two types");
  }
  std::map<std::string, StorageBytes> bytes;
  for (const auto key_ref : key_list.items) {
    const auto& key = doc.node(key_ref);
    if (key.kind != PickleKind::String) throw Error(source + ": a storage key is not a string");
    const auto type = dtype_of_key.find(key.text);
    if (type == dtype_of_key.end()) throw Error(source + ": storage '" + key.text + "' is listed but never used");
    if (bytes.count(key.text)) throw Error(source + ": storage '" + key.text + "' is listed twice");
    if (size - offset < 8) throw Error(source + ": truncated: storage '" + key.text + "' is missing");
    std::int64_t numel;
    std::memcpy(&numel, data + offset, 8);
    offset += 8;
    const auto element = torch::elementSize(storage_dtype(type->second, source));
    const auto length = numel < 0 ? std::nullopt : checked_mul(numel, static_cast<std::int64_t>(element));
    if (!length || static_cast<std::uint64_t>(*length) > size - offset)
      throw Error(source + ": truncated: storage '" + key.text + "' announces " + std::to_string(numel) +
                  " elements, more than the " + std::to_string(size - offset) + " bytes left");
    bytes[key.text] = {data + offset, numel};
    offset += *length;
  }
  for (const auto& storage : doc.storages()) {
    const auto found = bytes.find(storage.key);
    if (found == bytes.end()) throw Error(source + ": storage '" + storage.key + "' is used but not in the file");
    if (found->second.numel != storage.numel)
      throw Error(source + ": storage '" + storage.key + "' holds " + std::to_string(found->second.numel) +
                  " elements, its reference says " + std::to_string(storage.numel));
  }
  return convert(doc, root, bytes, "legacy", source);
}

// ---- zip container ----

class MemoryReadAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  MemoryReadAdapter(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char*) const override {
    if (pos >= size_) return 0;
    n = std::min<std::uint64_t>(n, size_ - pos);
    std::memcpy(buf, data_ + pos, n);
    return n;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
};

std::uint64_t le(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}

// torch.save stores every record uncompressed. Requiring that before PyTorchStreamReader sees
// the file bounds every record by the file's size: the reader allocates a record's stated size
// before extracting it, and a compressed entry could state gigabytes.
void check_zip_records_are_stored(const std::uint8_t* data, std::size_t size, const std::string& source) {
  const Error bad(source + ": not a readable zip archive (damaged central directory)");
  if (size < 22) throw Error(source + ": too short to be a checkpoint");
  std::size_t eocd = size - 22;
  const std::size_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  while (le(data + eocd, 4) != 0x06054b50) {
    if (eocd == lowest) throw bad;
    --eocd;
  }
  std::uint64_t entries = le(data + eocd + 10, 2);
  std::uint64_t directory = le(data + eocd + 16, 4);
  if (entries == 0xffff || directory == 0xffffffff) {
    if (eocd < 20 || le(data + eocd - 20, 4) != 0x07064b50) throw bad;
    const auto zip64 = le(data + eocd - 20 + 8, 8);
    if (zip64 > size || size - zip64 < 56 || le(data + zip64, 4) != 0x06064b50) throw bad;
    entries = le(data + zip64 + 32, 8);
    directory = le(data + zip64 + 48, 8);
  }
  std::uint64_t p = directory;
  for (std::uint64_t i = 0; i < entries; ++i) {
    if (p > size || size - p < 46 || le(data + p, 4) != 0x02014b50) throw bad;
    const auto method = le(data + p + 10, 2);
    const auto compressed = le(data + p + 20, 4), uncompressed = le(data + p + 24, 4);
    const auto name_length = le(data + p + 28, 2), extra = le(data + p + 30, 2), comment = le(data + p + 32, 2);
    if (method != 0)
      throw Error(source + ": a zip record is compressed (method " + std::to_string(method) +
                  "); torch.save never compresses, so this is not a checkpoint it wrote");
    if (compressed != uncompressed) throw bad;
    p += 46 + name_length + extra + comment;
  }
}

class ZipRecords {
 public:
  ZipRecords(const std::uint8_t* data, std::size_t size, const std::string& source) : source_(source) {
    check_zip_records_are_stored(data, size, source);
    try {
      reader_ =
          std::make_unique<caffe2::serialize::PyTorchStreamReader>(std::make_shared<MemoryReadAdapter>(data, size));
    } catch (const c10::Error& e) {
      throw Error(source + ": not a readable torch.save zip archive: " + first_line(e.what_without_backtrace()));
    }
  }
  bool has(const std::string& name) {
    try {
      return reader_->hasRecord(name);
    } catch (const c10::Error& e) {
      throw damaged(e);
    }
  }
  std::pair<at::DataPtr, std::size_t> get(const std::string& name) {
    try {
      auto [ptr, length] = reader_->getRecord(name);
      return {std::move(ptr), length};
    } catch (const c10::Error& e) {
      throw damaged(e);
    }
  }

 private:
  Error damaged(const c10::Error& e) const {
    return Error(source_ + ": damaged zip archive: " + first_line(e.what_without_backtrace()));
  }
  std::string source_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader_;
};

Checkpoint read_zip(const std::uint8_t* data, std::size_t size, const std::string& source) {
  ZipRecords records(data, size, source);
  if (records.has("byteorder")) {
    const auto [ptr, length] = records.get("byteorder");
    if (std::string(static_cast<const char*>(ptr.get()), length) != "little")
      throw Error(source + ": written on a big-endian machine");
  }
  if (!records.has("data.pkl")) throw Error(source + ": zip archive without data.pkl (not a torch.save file)");
  const auto [pickle, pickle_size] = records.get("data.pkl");
  PickleDocument doc;
  std::size_t offset = 0;
  const auto root =
      read_pickle(doc, static_cast<const std::uint8_t*>(pickle.get()), pickle_size, &offset, source + " (data.pkl)",
                  [&](PickleDocument& d, PickleRef pid) { return load_storage(d, pid, source); });
  std::map<std::string, at::DataPtr> owned;
  std::map<std::string, StorageBytes> bytes;
  for (const auto& storage : doc.storages()) {
    if (bytes.count(storage.key)) continue;
    const std::string record = "data/" + storage.key;
    if (!records.has(record)) throw Error(source + ": storage record '" + record + "' is missing");
    auto [ptr, length] = records.get(record);
    const auto element = torch::elementSize(storage_dtype(storage.dtype, source));
    const auto expected = checked_mul(storage.numel, static_cast<std::int64_t>(element));
    if (!expected || static_cast<std::uint64_t>(*expected) != length)
      throw Error(source + ": storage record '" + record + "' has " + std::to_string(length) +
                  " bytes, its reference says " + std::to_string(storage.numel) + " elements of " +
                  std::to_string(element));
    bytes[storage.key] = {static_cast<const std::uint8_t*>(ptr.get()), storage.numel};
    owned[storage.key] = std::move(ptr);
  }
  for (const auto& storage : doc.storages())
    if (bytes.at(storage.key).numel != storage.numel)
      throw Error(source + ": storage '" + storage.key + "' is referenced with two sizes");
  return convert(doc, root, bytes, "zip", source);
}

}  // namespace

Checkpoint read_checkpoint(const std::uint8_t* data, std::size_t size, const std::string& source) {
  if (size >= 4 && std::memcmp(data, "PK\x03\x04", 4) == 0) return read_zip(data, size, source);
  if (size >= 2 && data[0] == 0x80) return read_legacy(data, size, source);
  if (size >= 262 && std::memcmp(data + 257, "ustar", 5) == 0)
    throw Error(source +
                ": a tar checkpoint (PyTorch < 0.4), which is not supported; load and re-save it with PyTorch");
  throw Error(source + ": not a torch.save checkpoint (neither a zip archive nor a pickle stream)");
}

Checkpoint read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open checkpoint");
  std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(path + ": read error");
  return read_checkpoint(data.data(), data.size(), path);
}

}  // namespace imram
