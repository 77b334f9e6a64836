#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "imram/data/npy.h"
#include "imram/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using imram::DType;
using imram::NpyArray;

namespace {

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string npy_bytes(int major, const std::string& dict, const std::string& payload) {
  std::string header = dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(major);
  out += char(0);
  const std::size_t len = header.size();
  out += char(len & 0xff);
  out += char((len >> 8) & 0xff);
  if (major != 1) {
    out += char((len >> 16) & 0xff);
    out += char((len >> 24) & 0xff);
  }
  return out + header + payload;
}

}  // namespace

TEST(Npy, RoundTripsEveryDtype) {
  imram::test::TempDir dir;
  const std::vector<float> f32 = {1.5f, -2.f, 3.25f, 0.f, 7.f, 8.f};
  imram::write_npy(dir.file("a.npy"), {2, 3}, f32);
  auto a = NpyArray::open(dir.file("a.npy"));
  EXPECT_EQ(a.dtype(), DType::Float32);
  EXPECT_EQ(a.shape(), (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(std::vector<float>(a.as<float>(), a.as<float>() + 6), f32);

  const std::vector<double> f64 = {1e-300, 2.5};
  imram::write_npy(dir.file("b.npy"), {2}, f64);
  EXPECT_EQ(NpyArray::open(dir.file("b.npy")).as<double>()[0], 1e-300);

  const std::vector<std::int64_t> i64 = {-1, 1LL << 40, 3};
  imram::write_npy(dir.file("c.npy"), {3, 1}, i64);
  EXPECT_EQ(imram::test::read_npy_as_int64(dir.file("c.npy")), i64);

  const std::vector<std::int32_t> i32 = {5, -6};
  imram::write_npy(dir.file("d.npy"), {2}, i32);
  EXPECT_EQ(NpyArray::open(dir.file("d.npy")).as<std::int32_t>()[1], -6);
}

TEST(Npy, RoundTripsScalarsAndEmptyArrays) {
  imram::test::TempDir dir;
  imram::write_npy(dir.file("s.npy"), {}, std::vector<double>{4.5});
  auto s = NpyArray::open(dir.file("s.npy"));
  EXPECT_TRUE(s.shape().empty());
  EXPECT_EQ(s.as<double>()[0], 4.5);
  imram::write_npy(dir.file("e.npy"), {0, 4}, std::vector<float>{});
  EXPECT_EQ(NpyArray::open(dir.file("e.npy")).numel(), 0);
}

TEST(Npy, ReadsFormatVersions2And3) {
  imram::test::TempDir dir;
  const float values[2] = {1.f, 2.f};
  const std::string payload(reinterpret_cast<const char*>(values), sizeof values);
  for (int major : {2, 3}) {
    const auto path = dir.file("v" + std::to_string(major) + ".npy");
    write_raw(path, npy_bytes(major, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", payload));
    auto array = NpyArray::open(path);
    EXPECT_EQ(array.as<float>()[1], 2.f);
  }
}

// numpy aligns the data; a header of another length must not make typed reads misaligned.
TEST(Npy, ReadsDataThatAHeaderLeftMisaligned) {
  imram::test::TempDir dir;
  const double values[3] = {1.5, -2.25, 1e300};
  const std::string payload(reinterpret_cast<const char*>(values), sizeof values);
  std::string bytes = npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", payload);
  bytes.insert(bytes.find('\n'), 3, ' ');  // three more header bytes: the data starts at 67
  bytes[8] = char(bytes[8] + 3);
  write_raw(dir.file("odd.npy"), bytes);
  const auto array = NpyArray::open(dir.file("odd.npy"));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(array.data()) % alignof(double), 0u);
  EXPECT_EQ(imram::to_double(array), std::vector<double>(values, values + 3));
  EXPECT_EQ(array.as<double>()[2], 1e300);
}

TEST(Npy, ReadsTheReferenceFixtures) {
  auto images = NpyArray::open(std::string(IMRAM_TESTDATA_DIR) + "/reference/image_k3/inputs/images.npy");
  EXPECT_EQ(images.shape(), (std::vector<std::int64_t>{4, 7, 20}));
  EXPECT_EQ(images.dtype(), DType::Float32);
}

TEST(Npy, WrittenFilesStartDataOn64ByteBoundary) {
  imram::test::TempDir dir;
  imram::write_npy(dir.file("a.npy"), {3}, std::vector<float>{1, 2, 3});
  EXPECT_EQ((fs::file_size(dir.file("a.npy")) - 3 * sizeof(float)) % 64, 0u);
}

TEST(Npy, RejectsEveryDefectWithTheFileName) {
  imram::test::TempDir dir;
  const float values[4] = {1, 2, 3, 4};
  const std::string payload(reinterpret_cast<const char*>(values), sizeof values);
  struct Case {
    std::string name, bytes, message;
  };
  const std::vector<Case> cases = {
      {"magic.npy", "PK\x03\x04 not numpy at all", "bad magic"},
      {"truncated.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", payload.substr(0, 10)), "truncated"},
      {"longer.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", payload), "mismatch"},
      {"fortran.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", payload), "Fortran"},
      {"dtype.npy", npy_bytes(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", payload),
       "unsupported .npy dtype"},
      {"bigendian.npy", npy_bytes(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", payload),
       "big-endian"},
      {"version.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", payload).replace(6, 1, "\x09"),
       "version"},
      {"header.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, }", payload), "shape"},
      {"cut_header.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", payload).substr(0, 30), "truncated"},
      {"empty.npy", "", "empty"},
      // The smallest shortfalls: the earlier truncation case missed 1.5 elements.
      {"one_element_short.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", payload.substr(0, 12)), "truncated"},
      {"one_byte_short.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", payload.substr(0, 15)), "truncated"},
      {"one_byte_long.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", payload + "x"),
       "mismatch"},
      // 2^32 x 2^32 x 4 bytes wraps to 0 in 64 bits; the file must not pass for an empty array.
      {"overflow.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", ""),
       "larger than any file"},
      {"overflow3.npy",
       npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (65536, 65536, 65536, 65536), }", payload),
       "larger than any file"},
      {"huge_dim.npy",
       npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", payload),
       "malformed"},
  };
  for (const auto& c : cases) {
    const auto path = dir.file(c.name);
    write_raw(path, c.bytes);
    try {
      NpyArray::open(path);
      ADD_FAILURE() << c.name << " was accepted";
    } catch (const imram::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find(c.message), std::string::npos) << c.name << ": " << what;
    }
  }
  EXPECT_THROW(NpyArray::open(dir.file("missing.npy")), imram::Error);
}

TEST(Npy, TypedAccessChecksTheDtype) {
  imram::test::TempDir dir;
  imram::write_npy(dir.file("a.npy"), {1}, std::vector<double>{1.0});
  auto array = NpyArray::open(dir.file("a.npy"));
  EXPECT_THROW(array.as<float>(), imram::Error);
  EXPECT_THROW(array.require_ndim(2), imram::Error);
  EXPECT_THROW(imram::test::read_npy_as_int64(dir.file("a.npy")), imram::Error);
}

TEST(Npy, WritingIsAtomicAndLeavesNoTemporaryFiles) {
  imram::test::TempDir dir;
  imram::write_npy(dir.file("a.npy"), {2}, std::vector<float>{1, 2});
  imram::write_npy(dir.file("a.npy"), {3}, std::vector<float>{1, 2, 3});
  EXPECT_EQ(NpyArray::open(dir.file("a.npy")).numel(), 3);
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1);
}

// A writer killed mid-file leaves `<path>.tmp.<pid>`; the next write of that path removes it
// (no process has pid 999999999: Linux's pid_max is at most 2^22), and leaves a live one's.
TEST(Npy, AKilledWritersTemporaryGoesWithTheNextWrite) {
  imram::test::TempDir dir;
  std::ofstream(dir.file("a.npy.tmp.999999999")) << "half a file";
  std::ofstream(dir.file("a.npy.tmp.1")) << "init is alive";
  imram::write_npy(dir.file("a.npy"), {2}, std::vector<float>{1, 2});
  EXPECT_FALSE(fs::exists(dir.file("a.npy.tmp.999999999")));
  EXPECT_TRUE(fs::exists(dir.file("a.npy.tmp.1")));
}

TEST(Npy, MappingOutlivesTheFirstHandle) {
  imram::test::TempDir dir;
  imram::write_npy(dir.file("a.npy"), {2}, std::vector<float>{3, 4});
  NpyArray copy;
  {
    auto array = NpyArray::open(dir.file("a.npy"));
    copy = array;
  }
  EXPECT_EQ(copy.as<float>()[1], 4.f);
}
