#pragma once
// A restricted Python unpickler for the pickles inside torch.save files (docs/checkpoints.md).
// It never runs pickled code: it builds plain values (None, booleans, integers, floats, strings,
// bytes, lists, tuples, dicts), and of the globals a pickle may name it knows only an allow-list
// (collections.OrderedDict, argparse.Namespace, torch's tensor rebuild functions and storage
// types, as PyTorch's weights_only loader does); any other global is an error naming it.
// Persistent ids (torch's storage references) are resolved by the caller.
//
// Values live in one arena owned by the PickleDocument and refer to each other by index, so that
// a pickle that makes a list contain itself (legal, via the memo) is neither a leak nor an
// infinite recursion. Nothing is allocated in proportion to a length field before the bytes it
// announces are known to be there.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace imram {

enum class PickleKind {
  None,
  Bool,
  Int,
  Float,
  String,
  Bytes,
  List,
  Tuple,
  Dict,
  Namespace,  // argparse.Namespace: its attributes as a dict
  Global,     // an allow-listed class or function, e.g. "torch.FloatStorage"
  Storage,    // a torch storage reference returned by the persistent-id resolver
  Tensor,     // torch._utils._rebuild_tensor_v2(storage, offset, sizes, strides, ...)
};
const char* pickle_kind_name(PickleKind kind);

using PickleRef = std::uint32_t;

// A tensor as the pickle describes it; the bytes are in its storage.
struct PickleTensor {
  PickleRef storage = 0;
  std::int64_t offset = 0;  // in elements
  std::vector<std::int64_t> sizes, strides;
};

// A storage as the container describes it (torch.save's persistent id).
struct PickleStorage {
  std::string dtype;     // the storage type without "Storage": "Float", "Double", "Long", ...
  std::string key;       // the container's name for its bytes
  std::string location;  // "cpu", "cuda:0", ...
  std::int64_t numel = 0;
  // Legacy files may pickle a view into another storage: (key, offset, numel) of the view.
  bool is_view = false;
  std::int64_t view_offset = 0;
};

struct PickleNode {
  PickleKind kind = PickleKind::None;
  bool boolean = false;
  std::int64_t integer = 0;
  double number = 0;
  std::string text;              // String, Bytes, Global ("module.name")
  std::vector<PickleRef> items;  // List, Tuple; Dict: key, value, key, value, ...;
                                 // Namespace: its attribute dict (none before BUILD)
  std::size_t index = 0;         // Storage and Tensor: position in the document's tables
};

class PickleDocument {
 public:
  const PickleNode& node(PickleRef ref) const { return nodes_.at(ref); }
  const PickleTensor& tensor(PickleRef ref) const { return tensors_.at(node(ref).index); }
  const PickleStorage& storage(PickleRef ref) const { return storages_.at(node(ref).index); }
  const std::vector<PickleStorage>& storages() const { return storages_; }
  // Dict or Namespace lookup by string key; nullptr when absent.
  const PickleRef* find(PickleRef dict, const std::string& key) const;

  PickleRef add(PickleNode node);
  PickleRef add_storage(PickleStorage storage);
  PickleRef add_tensor(PickleTensor tensor);

 private:
  std::vector<PickleNode> nodes_;
  std::vector<PickleStorage> storages_;
  std::vector<PickleTensor> tensors_;
};

// Turns a persistent id (the value pickled by torch.save's persistent_id) into a value, usually
// add_storage(...). Throws imram::Error when it does not describe a storage.
using PersistentLoad = std::function<PickleRef(PickleDocument& document, PickleRef pid)>;

// Reads one pickle starting at data[*offset] (a legacy torch.save file holds several in a row)
// and returns its top value; *offset moves past its STOP. Errors are imram::Error naming `source`
// and the byte offset. Pickles are read iteratively: nesting depth costs no stack.
PickleRef read_pickle(PickleDocument& document, const std::uint8_t* data, std::size_t size, std::size_t* offset,
                      const std::string& source, const PersistentLoad& persistent_load);

}  // namespace imram
