// The restricted unpickler: what it builds, what it refuses, and that hostile inputs end in an
// imram::Error rather than a crash, a hang or a huge allocation.
#include <gtest/gtest.h>

#include <string>

#include "imram/data/pickle.h"
#include "imram/error.h"

namespace {

using namespace std::string_literals;
using imram::PickleKind;
using imram::PickleRef;

struct Parsed {
  imram::PickleDocument doc;
  PickleRef root = 0;
};

Parsed parse(const std::string& bytes) {
  Parsed parsed;
  std::size_t offset = 0;
  parsed.root = imram::read_pickle(parsed.doc, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(),
                                   &offset, "test.pkl", {});
  EXPECT_EQ(offset, bytes.size());
  return parsed;
}

std::string parse_error(const std::string& bytes) {
  try {
    parse(bytes);
  } catch (const imram::Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string u32(std::uint32_t v) {
  return std::string{char(v & 0xff), char((v >> 8) & 0xff), char((v >> 16) & 0xff), char(v >> 24)};
}

TEST(Pickle, BuildsPlainValuesAsPythonPicklesThem) {
  // pickle.dumps({'a': [1, -2, 70000, 2**40], 'b': (True, None, 0.5), 'c': 'x'}, protocol=2)
  const auto bytes =
      "\x80\x02}q\x00(X\x01\x00\x00\x00"
      "aq\x01]q\x02(K\x01J\xfe\xff\xff\xffJp\x11\x01\x00\x8a\x06\x00\x00\x00\x00"
      "\x00\x01"
      "eX\x01\x00\x00\x00"
      "bq\x03\x88NG\x3f\xe0\x00\x00\x00\x00\x00\x00\x87q\x04X\x01\x00\x00\x00"
      "cq\x05X\x01\x00\x00\x00xq\x06u."s;
  const auto parsed = parse(bytes);
  const auto& doc = parsed.doc;
  ASSERT_EQ(doc.node(parsed.root).kind, PickleKind::Dict);
  const auto* a = doc.find(parsed.root, "a");
  ASSERT_NE(a, nullptr);
  const auto& list = doc.node(*a);
  ASSERT_EQ(list.kind, PickleKind::List);
  ASSERT_EQ(list.items.size(), 4u);
  EXPECT_EQ(doc.node(list.items[0]).integer, 1);
  EXPECT_EQ(doc.node(list.items[1]).integer, -2);
  EXPECT_EQ(doc.node(list.items[2]).integer, 70000);
  EXPECT_EQ(doc.node(list.items[3]).integer, std::int64_t(1) << 40);
  const auto& tuple = doc.node(*doc.find(parsed.root, "b"));
  ASSERT_EQ(tuple.kind, PickleKind::Tuple);
  EXPECT_TRUE(doc.node(tuple.items[0]).boolean);
  EXPECT_EQ(doc.node(tuple.items[1]).kind, PickleKind::None);
  EXPECT_EQ(doc.node(tuple.items[2]).number, 0.5);
  EXPECT_EQ(doc.node(*doc.find(parsed.root, "c")).text, "x");
}

TEST(Pickle, RefusesEveryGlobalOutsideTheAllowList) {
  // os.system('touch pwned') in the forms Python writes it: GLOBAL (protocol 2) and STACK_GLOBAL (4).
  const auto global = "\x80\x02\x63os\nsystem\nX\x0b\x00\x00\x00touch pwned\x85R."s;
  EXPECT_NE(parse_error(global).find("refused: the pickle references the global 'os.system'"), std::string::npos)
      << parse_error(global);
  const auto stack_global = "\x80\x04\x8c\x08\x62uiltins\x8c\x04\x65val\x93X\x01\x00\x00\x00\x31\x85R."s;
  EXPECT_NE(parse_error(stack_global).find("'builtins.eval'"), std::string::npos) << parse_error(stack_global);
  EXPECT_NE(parse_error("\x80\x02\x63torch\nload\n.").find("'torch.load'"), std::string::npos);
  // An allowed global called in a way a checkpoint never does.
  EXPECT_NE(parse_error("\x80\x02\x63\x63ollections\nOrderedDict\nK\x01\x85R.").find("calls collections.OrderedDict"),
            std::string::npos);
}

TEST(Pickle, SelfReferenceIsNeitherALeakNorARecursion) {
  // l = []; l.append(l): EMPTY_LIST, BINPUT 0, BINGET 0, APPEND, STOP
  const auto parsed = parse("\x80\x02]q\x00h\x00\x61."s);
  const auto& list = parsed.doc.node(parsed.root);
  ASSERT_EQ(list.items.size(), 1u);
  EXPECT_EQ(list.items[0], parsed.root);
}

TEST(Pickle, DeepNestingCostsNoStack) {
  // A million nested lists: an unpickler that recursed would overflow the stack.
  std::string bytes = "\x80\x02";
  const int depth = 1000000;
  for (int i = 0; i < depth; ++i) bytes += "(";
  bytes += "]";
  for (int i = 0; i < depth; ++i) bytes += "l";
  bytes += ".";
  const auto parsed = parse(bytes);
  EXPECT_EQ(parsed.doc.node(parsed.root).kind, PickleKind::List);
}

TEST(Pickle, TruncatedAndOversizedInputsAreClearErrors) {
  EXPECT_NE(parse_error("\x80\x02]").find("truncated"), std::string::npos);
  EXPECT_NE(parse_error("").find("truncated"), std::string::npos);
  // A 4 GB string announced in a 10-byte file: refused before anything is allocated.
  const auto huge = parse_error("\x80\x02X" + u32(0xffffffffu) + "ab.");
  EXPECT_NE(huge.find("a length of 4294967295 bytes runs past the end"), std::string::npos) << huge;
  EXPECT_NE(parse_error("\x80\x02\x8e\xff\xff\xff\xff\xff\xff\xff\xff."s).find("runs past the end"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.").find("does not fit 64 bits"),
            std::string::npos);
  EXPECT_NE(parse_error("\x80\x02h\x07.").find("memo entry 7"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02\x61.").find("empty stack"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02K\x01K\x02.").find("2 values on the stack"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02\x63os\nsys").find("truncated"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02\xff.").find("opcode 0xff"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02NQ.").find("persistent id"), std::string::npos);
  // Errors name the file and the byte.
  EXPECT_EQ(parse_error("\x80\x02h\x07.").rfind("test.pkl: pickle at byte 2: ", 0), 0u);
}

}  // namespace
