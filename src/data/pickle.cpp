#include "imram/data/pickle.h"

#include <cstdio>
#include <cstring>
#include <set>
#include <unordered_map>

#include "imram/error.h"

namespace imram {

const char* pickle_kind_name(PickleKind kind) {
  switch (kind) {
    case PickleKind::None:
      return "None";
    case PickleKind::Bool:
      return "a boolean";
    case PickleKind::Int:
      return "an integer";
    case PickleKind::Float:
      return "a float";
    case PickleKind::String:
      return "a string";
    case PickleKind::Bytes:
      return "bytes";
    case PickleKind::List:
      return "a list";
    case PickleKind::Tuple:
      return "a tuple";
    case PickleKind::Dict:
      return "a dict";
    case PickleKind::Namespace:
      return "an argparse.Namespace";
    case PickleKind::Global:
      return "a class or function";
    case PickleKind::Storage:
      return "a storage";
    case PickleKind::Tensor:
      return "a tensor";
  }
  return "?";
}

const PickleRef* PickleDocument::find(PickleRef dict, const std::string& key) const {
  if (node(dict).kind == PickleKind::Namespace) {
    if (node(dict).items.empty()) return nullptr;
    dict = node(dict).items[0];
  }
  const auto& n = node(dict);
  if (n.kind != PickleKind::Dict) return nullptr;
  for (std::size_t i = 0; i + 1 < n.items.size(); i += 2) {
    const auto& k = node(n.items[i]);
    if (k.kind == PickleKind::String && k.text == key) return &n.items[i + 1];
  }
  return nullptr;
}

PickleRef PickleDocument::add(PickleNode n) {
  nodes_.push_back(std::move(n));
  return static_cast<PickleRef>(nodes_.size() - 1);
}

PickleRef PickleDocument::add_storage(PickleStorage storage) {
  storages_.push_back(std::move(storage));
  PickleNode n;
  n.kind = PickleKind::Storage;
  n.index = storages_.size() - 1;
  return add(std::move(n));
}

PickleRef PickleDocument::add_tensor(PickleTensor tensor) {
  tensors_.push_back(std::move(tensor));
  PickleNode n;
  n.kind = PickleKind::Tensor;
  n.index = tensors_.size() - 1;
  return add(std::move(n));
}

namespace {

// The globals a torch.save checkpoint of the authors' code needs, as PyTorch's weights_only
// loader allows them. Anything else (os.system, builtins.eval, any class with a __reduce__) is
// refused before it could be called.
const std::set<std::string>& allowed_globals() {
  static const std::set<std::string> globals = {"collections.OrderedDict",
                                                "argparse.Namespace",
                                                "torch._utils._rebuild_tensor_v2",
                                                "torch._utils._rebuild_parameter",
                                                "torch.FloatStorage",
                                                "torch.DoubleStorage",
                                                "torch.HalfStorage",
                                                "torch.BFloat16Storage",
                                                "torch.LongStorage",
                                                "torch.IntStorage",
                                                "torch.ShortStorage",
                                                "torch.CharStorage",
                                                "torch.ByteStorage",
                                                "torch.BoolStorage"};
  return globals;
}

// More than any weight has, and bounded so that one tuple shared by many tensors costs little.
constexpr std::size_t kMaxTensorDims = 64;

class Reader {
 public:
  Reader(PickleDocument& document, const std::uint8_t* data, std::size_t size, std::size_t offset,
         const std::string& source, const PersistentLoad& persistent_load)
      : doc_(document), data_(data), size_(size), pos_(offset), source_(source), persistent_load_(persistent_load) {}

  PickleRef run();
  std::size_t position() const { return pos_; }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(source_ + ": pickle at byte " + std::to_string(op_pos_) + ": " + what);
  }

  void need(std::size_t n) {
    if (n > size_ - pos_)
      fail("truncated (needs " + std::to_string(n) + " more bytes, " + std::to_string(size_ - pos_) + " left)");
  }
  std::uint64_t read_le(std::size_t n) {
    need(n);
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < n; ++i) value |= std::uint64_t(data_[pos_ + i]) << (8 * i);
    pos_ += n;
    return value;
  }
  std::string read_bytes(std::uint64_t n) {
    if (n > size_ - pos_)
      fail("a length of " + std::to_string(n) + " bytes runs past the end (" + std::to_string(size_ - pos_) + " left)");
    std::string text(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return text;
  }
  std::string read_line() {
    const auto* begin = data_ + pos_;
    const auto* end = static_cast<const std::uint8_t*>(std::memchr(begin, '\n', size_ - pos_));
    if (!end) fail("truncated (a line without its newline)");
    std::string line(reinterpret_cast<const char*>(begin), end - begin);
    pos_ += line.size() + 1;
    return line;
  }
  std::int64_t read_long(std::size_t n) {
    if (n > 8) fail("an integer of " + std::to_string(n) + " bytes does not fit 64 bits");
    if (n == 0) return 0;
    std::uint64_t value = read_le(n);
    if (n < 8 && (value >> (8 * n - 1)) & 1) value |= ~std::uint64_t(0) << (8 * n);
    return static_cast<std::int64_t>(value);
  }

  PickleRef push_new(PickleNode n) {
    const auto ref = doc_.add(std::move(n));
    stack_.push_back(ref);
    return ref;
  }
  PickleRef push_scalar(PickleKind kind) {
    PickleNode n;
    n.kind = kind;
    return push_new(std::move(n));
  }
  PickleRef pop() {
    if (stack_.size() <= stack_floor()) fail("pops an empty stack");
    const auto ref = stack_.back();
    stack_.pop_back();
    return ref;
  }
  PickleRef top() {
    if (stack_.size() <= stack_floor()) fail("reads an empty stack");
    return stack_.back();
  }
  std::size_t stack_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  // The items pushed since the last MARK, which is removed.
  std::vector<PickleRef> pop_mark() {
    if (marks_.empty()) fail("uses a mark that was never set");
    const auto mark = marks_.back();
    marks_.pop_back();
    std::vector<PickleRef> items(stack_.begin() + mark, stack_.end());
    stack_.resize(mark);
    return items;
  }
  PickleNode& edit(PickleRef ref) { return const_cast<PickleNode&>(doc_.node(ref)); }

  void memo_put(std::uint64_t index) { memo_[index] = top(); }
  void memo_get(std::uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) fail("reads memo entry " + std::to_string(index) + " that was never stored");
    stack_.push_back(it->second);
  }

  void push_global(const std::string& module, const std::string& name) {
    const std::string qualified = module + "." + name;
    if (!allowed_globals().count(qualified))
      throw Error(source_ + ": refused: the pickle references the global '" + qualified +
                  "', which is not a tensor, a plain container or argparse.Namespace (nothing was "
                  "executed)");
    PickleNode n;
    n.kind = PickleKind::Global;
    n.text = qualified;
    push_new(std::move(n));
  }

  void append(PickleRef list, const std::vector<PickleRef>& items) {
    if (doc_.node(list).kind != PickleKind::List)
      fail(std::string("appends to ") + pickle_kind_name(doc_.node(list).kind) + ", not a list");
    auto& target = edit(list).items;
    target.insert(target.end(), items.begin(), items.end());
  }
  void set_items(PickleRef dict, const std::vector<PickleRef>& items) {
    if (doc_.node(dict).kind != PickleKind::Dict)
      fail(std::string("sets items of ") + pickle_kind_name(doc_.node(dict).kind) + ", not a dict");
    if (items.size() % 2) fail("sets items from an odd number of keys and values");
    auto& target = edit(dict).items;
    target.insert(target.end(), items.begin(), items.end());
  }

  PickleRef make_sequence(PickleKind kind, std::vector<PickleRef> items) {
    PickleNode n;
    n.kind = kind;
    n.items = std::move(items);
    return push_new(std::move(n));
  }

  std::vector<std::int64_t> int_tuple(PickleRef ref, const char* what) {
    const auto& n = doc_.node(ref);
    if (n.kind != PickleKind::Tuple) fail(std::string(what) + " is not a tuple");
    if (n.items.size() > kMaxTensorDims)
      fail(std::string(what) + " has more than " + std::to_string(kMaxTensorDims) + " dimensions");
    std::vector<std::int64_t> values;
    for (auto item : n.items) {
      const auto& v = doc_.node(item);
      if (v.kind != PickleKind::Int || v.integer < 0)
        fail(std::string(what) + " holds a non-integer or negative entry");
      values.push_back(v.integer);
    }
    return values;
  }

  void call(PickleRef callable, PickleRef args_ref, bool as_newobj) {
    const auto& fn = doc_.node(callable);
    if (fn.kind != PickleKind::Global) fail(std::string("calls ") + pickle_kind_name(fn.kind));
    const auto& args_node = doc_.node(args_ref);
    if (args_node.kind != PickleKind::Tuple) fail("calls " + fn.text + " with arguments that are not a tuple");
    // No allowed call takes more than 7 arguments; checked before anything is copied.
    if (args_node.items.size() > 7)
      fail("calls " + fn.text + " with " + std::to_string(args_node.items.size()) + " arguments");
    const std::vector<PickleRef> args = args_node.items;
    const std::string name = fn.text;
    if (name == "collections.OrderedDict" && args.empty()) {
      make_sequence(PickleKind::Dict, {});
    } else if (name == "argparse.Namespace" && args.empty() && as_newobj) {
      make_sequence(PickleKind::Namespace, {});
    } else if (name == "torch._utils._rebuild_tensor_v2" && !as_newobj && (args.size() == 6 || args.size() == 7)) {
      if (doc_.node(args[0]).kind != PickleKind::Storage)
        fail("rebuilds a tensor from something that is not a storage");
      if (doc_.node(args[1]).kind != PickleKind::Int || doc_.node(args[1]).integer < 0)
        fail("rebuilds a tensor at a storage offset that is not a non-negative integer");
      PickleTensor tensor;
      tensor.storage = args[0];
      tensor.offset = doc_.node(args[1]).integer;
      tensor.sizes = int_tuple(args[2], "a tensor's size");
      tensor.strides = int_tuple(args[3], "a tensor's stride");
      if (tensor.sizes.size() != tensor.strides.size())
        fail("rebuilds a tensor whose size and stride differ in length");
      stack_.push_back(doc_.add_tensor(std::move(tensor)));
    } else if (name == "torch._utils._rebuild_parameter" && !as_newobj && args.size() == 3) {
      if (doc_.node(args[0]).kind != PickleKind::Tensor)
        fail("rebuilds a parameter from something that is not a tensor");
      stack_.push_back(args[0]);
    } else {
      fail("calls " + name + " with " + std::to_string(args.size()) + " arguments, which a checkpoint never does");
    }
  }

  void build(PickleRef object, PickleRef state) {
    const auto kind = doc_.node(object).kind;
    const auto& s = doc_.node(state);
    if (kind == PickleKind::Namespace) {
      // The namespace refers to its attribute dict instead of copying it: a pickle that builds
      // many namespaces from one large dict must not cost its size times theirs.
      if (s.kind != PickleKind::Dict) fail("sets an argparse.Namespace's attributes from something that is not a dict");
      if (!doc_.node(object).items.empty()) fail("sets an argparse.Namespace's attributes twice");
      edit(object).items.push_back(state);
    } else if (kind == PickleKind::Dict) {
      // An OrderedDict's attributes: a state_dict's _metadata (module versions), not needed.
      if (s.kind != PickleKind::Dict && s.kind != PickleKind::None)
        fail("sets a dict's attributes from " + std::string(pickle_kind_name(s.kind)));
    } else {
      fail(std::string("sets the state of ") + pickle_kind_name(kind));
    }
  }

  PickleDocument& doc_;
  const std::uint8_t* data_;
  std::size_t size_, pos_, op_pos_ = 0;
  const std::string& source_;
  const PersistentLoad& persistent_load_;
  std::vector<PickleRef> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, PickleRef> memo_;
};

PickleRef Reader::run() {
  for (;;) {
    op_pos_ = pos_;
    need(1);
    const std::uint8_t op = data_[pos_++];
    switch (op) {
      case 0x80: {  // PROTO
        const auto protocol = read_le(1);
        if (protocol > 5) fail("protocol " + std::to_string(protocol) + " is newer than 5");
        break;
      }
      case 0x95: {  // FRAME: a length hint only
        const auto length = read_le(8);
        if (length > size_ - pos_) fail("a frame of " + std::to_string(length) + " bytes runs past the end");
        break;
      }
      case '.': {  // STOP
        if (!marks_.empty()) fail("stops with an unclosed mark");
        if (stack_.size() != 1) fail("stops with " + std::to_string(stack_.size()) + " values on the stack, not 1");
        return stack_.back();
      }
      case '(':
        marks_.push_back(stack_.size());
        break;  // MARK
      case '0':
        pop();
        break;  // POP
      case '1':
        pop_mark();
        break;  // POP_MARK
      case '2':
        stack_.push_back(top());
        break;  // DUP
      case 'N':
        push_scalar(PickleKind::None);
        break;
      case 0x88:
        push_scalar(PickleKind::Bool);
        edit(stack_.back()).boolean = true;
        break;  // NEWTRUE
      case 0x89:
        push_scalar(PickleKind::Bool);
        break;  // NEWFALSE
      case 'J':
        push_scalar(PickleKind::Int);
        edit(stack_.back()).integer = read_long(4);
        break;  // BININT
      case 'K':
        push_scalar(PickleKind::Int);
        edit(stack_.back()).integer = std::int64_t(read_le(1));
        break;
      case 'M':
        push_scalar(PickleKind::Int);
        edit(stack_.back()).integer = std::int64_t(read_le(2));
        break;
      case 0x8a: {  // LONG1
        const auto n = read_le(1);
        const auto value = read_long(n);
        push_scalar(PickleKind::Int);
        edit(stack_.back()).integer = value;
        break;
      }
      case 0x8b: {  // LONG4
        const auto n = read_le(4);
        const auto value = read_long(n);
        push_scalar(PickleKind::Int);
        edit(stack_.back()).integer = value;
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        need(8);
        std::uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | data_[pos_ + i];
        pos_ += 8;
        double value;
        std::memcpy(&value, &bits, sizeof value);
        push_scalar(PickleKind::Float);
        edit(stack_.back()).number = value;
        break;
      }
      case 'X':
      case 0x8c:
      case 0x8d:  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
      case 'T':
      case 'U':  // BINSTRING, SHORT_BINSTRING (Python 2 str)
      case 'B':
      case 'C':
      case 0x8e: {  // BINBYTES, SHORT_BINBYTES, BINBYTES8
        const std::size_t width = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
        std::uint64_t length = read_le(width);
        if (op == 'T' && (length >> 31)) fail("a string of negative length");
        PickleNode n;
        n.kind = (op == 'B' || op == 'C' || op == 0x8e) ? PickleKind::Bytes : PickleKind::String;
        n.text = read_bytes(length);
        push_new(std::move(n));
        break;
      }
      case ']':
        make_sequence(PickleKind::List, {});
        break;  // EMPTY_LIST
      case 'l':
        make_sequence(PickleKind::List, pop_mark());
        break;  // LIST
      case ')':
        make_sequence(PickleKind::Tuple, {});
        break;  // EMPTY_TUPLE
      case 't':
        make_sequence(PickleKind::Tuple, pop_mark());
        break;  // TUPLE
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<PickleRef> items(op - 0x84);
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        make_sequence(PickleKind::Tuple, std::move(items));
        break;
      }
      case '}':
        make_sequence(PickleKind::Dict, {});
        break;     // EMPTY_DICT
      case 'd': {  // DICT
        auto items = pop_mark();
        if (items.size() % 2) fail("builds a dict from an odd number of keys and values");
        make_sequence(PickleKind::Dict, std::move(items));
        break;
      }
      case 'a': {
        const auto item = pop();
        append(top(), {item});
        break;
      }  // APPEND
      case 'e': {
        const auto items = pop_mark();
        append(top(), items);
        break;
      }            // APPENDS
      case 's': {  // SETITEM
        const auto value = pop();
        const auto key = pop();
        set_items(top(), {key, value});
        break;
      }
      case 'u': {
        const auto items = pop_mark();
        set_items(top(), items);
        break;
      }  // SETITEMS
      case 'q':
        memo_put(read_le(1));
        break;  // BINPUT
      case 'r':
        memo_put(read_le(4));
        break;  // LONG_BINPUT
      case 0x94:
        memo_put(memo_.size());
        break;  // MEMOIZE
      case 'h':
        memo_get(read_le(1));
        break;  // BINGET
      case 'j':
        memo_get(read_le(4));
        break;     // LONG_BINGET
      case 'c': {  // GLOBAL
        const auto module = read_line();
        const auto name = read_line();
        push_global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const auto name = pop();
        const auto module = pop();
        if (doc_.node(name).kind != PickleKind::String || doc_.node(module).kind != PickleKind::String)
          fail("names a global with something other than strings");
        push_global(doc_.node(module).text, doc_.node(name).text);
        break;
      }
      case 'R': {  // REDUCE
        const auto args = pop();
        const auto callable = pop();
        call(callable, args, false);
        break;
      }
      case 0x81: {  // NEWOBJ
        const auto args = pop();
        const auto cls = pop();
        call(cls, args, true);
        break;
      }
      case 'b': {  // BUILD
        const auto state = pop();
        build(top(), state);
        break;
      }
      case 'Q': {  // BINPERSID
        const auto pid = pop();
        if (!persistent_load_) fail("holds a persistent id, which this file cannot have");
        stack_.push_back(persistent_load_(doc_, pid));
        break;
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("opcode ") + hex + " is not one torch.save writes (or not allowed)");
      }
    }
  }
}

}  // namespace

PickleRef read_pickle(PickleDocument& document, const std::uint8_t* data, std::size_t size, std::size_t* offset,
                      const std::string& source, const PersistentLoad& persistent_load) {
  if (*offset > size) throw Error(source + ": pickle starts past the end of the data");
  Reader reader(document, data, size, *offset, source, persistent_load);
  const auto result = reader.run();
  *offset = reader.position();
  return result;
}

}  // namespace imram
