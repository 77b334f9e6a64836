// The authors' .pth.tar checkpoints (tests/testdata/checkpoints, written by their code with
// PyTorch 1.13 in both torch.save formats, one with the weight_norm image layer): read,
// translated, and refused when hostile.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "imram/error.h"
#include "imram/model/checkpoint.h"
#include "test_util.h"

namespace {

using namespace std::string_literals;

std::string checkpoint_dir(const std::string& name) { return imram::test::testdata("checkpoints/" + name); }

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

nlohmann::json read_case(const std::string& name) {
  std::ifstream in(checkpoint_dir(name) + "/case.json");
  return nlohmann::json::parse(in);
}

// The error read_checkpoint gives, or "(read)" when it accepts the bytes.
std::string read_error(const std::vector<std::uint8_t>& bytes) {
  try {
    imram::read_checkpoint(bytes.data(), bytes.size(), "test.pth.tar");
  } catch (const imram::Error& e) {
    return e.what();
  }
  return "(read)";
}

// The first 137 bytes of a legacy file: magic number, protocol version, system information.
std::vector<std::uint8_t> legacy_with_pickle(const std::string& pickle) {
  auto bytes = read_bytes(checkpoint_dir("legacy_text_k2") + "/model_best.pth.tar");
  bytes.resize(137);
  bytes.insert(bytes.end(), pickle.begin(), pickle.end());
  return bytes;
}

std::vector<std::uint8_t> zip_with_records(const std::vector<std::pair<std::string, std::string>>& records,
                                           bool compress = false) {
  std::vector<std::uint8_t> bytes;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, std::size_t size) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + size);
    return size;
  });
  for (const auto& [name, content] : records) writer.writeRecord(name, content.data(), content.size(), compress);
  writer.writeEndOfFile();
  return bytes;
}

const std::string kOsSystem = "\x80\x02\x63os\nsystem\nX\x0b\x00\x00\x00touch pwned\x85R."s;

class FixtureCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureCheckpoint, ReadsEveryEntryAsTheAuthorsSavedIt) {
  const auto expected = read_case(GetParam());
  const auto checkpoint = imram::read_checkpoint(checkpoint_dir(GetParam()) + "/model_best.pth.tar");
  EXPECT_EQ(checkpoint.format, expected["format"].get<std::string>());
  ASSERT_EQ(checkpoint.state_dict.size(), expected["state_dict_keys"].size());
  for (std::size_t i = 0; i < checkpoint.state_dict.size(); ++i)
    EXPECT_EQ(checkpoint.state_dict[i].first, expected["state_dict_keys"][i].get<std::string>());
  EXPECT_EQ(checkpoint.metadata["epoch"].get<std::int64_t>(), expected["epoch"].get<std::int64_t>());
  EXPECT_EQ(checkpoint.metadata["best_rsum"].get<double>(), expected["best_rsum"].get<double>());
  ASSERT_TRUE(checkpoint.options.has_value());
  EXPECT_EQ(*checkpoint.options, expected["opt"]);
  // Shapes follow from the options: e.g. the image layer maps img_dim to embed_size.
  const auto& opt = expected["opt"];
  const std::string image_weight =
      opt["precomp_enc_type"] == "weight_norm" ? "module.img_enc.fc_local.weight_v" : "module.img_enc.fc_local.weight";
  for (const auto& [name, tensor] : checkpoint.state_dict) {
    if (name == image_weight) {
      EXPECT_EQ(tensor.sizes(),
                torch::IntArrayRef({opt["embed_size"].get<std::int64_t>(), opt["img_dim"].get<std::int64_t>()}));
    }
    if (name == "module.img_enc.fc_local.weight_g") {
      EXPECT_EQ(tensor.dim(), 0);
    }
  }
}

TEST_P(FixtureCheckpoint, ImportKeepsEpochAndBestRsumAndStripsDataParallel) {
  const auto imported = imram::import_checkpoint(checkpoint_dir(GetParam()) + "/model_best.pth.tar",
                                                 checkpoint_dir(GetParam()) + "/vocab.json");
  const auto expected = read_case(GetParam());
  EXPECT_TRUE(imported.stripped_module_prefix);
  std::vector<std::string> extra_keys;  // e.g. Eiters
  for (const auto& key : expected["keys"])
    if (key != "model" && key != "opt" && key != "epoch" && key != "best_rsum") extra_keys.push_back(key);
  EXPECT_EQ(imported.ignored, extra_keys);
  EXPECT_EQ(imported.model.metadata["epoch"].get<std::int64_t>(), expected["epoch"].get<std::int64_t>());
  EXPECT_EQ(imported.model.metadata["best_rsum"].get<double>(), expected["best_rsum"].get<double>());
  EXPECT_EQ(imported.model.metadata["format"].get<std::string>(), expected["format"].get<std::string>());
  // Every weight arrives unchanged under its name without `module.`.
  const auto checkpoint = imram::read_checkpoint(checkpoint_dir(GetParam()) + "/model_best.pth.tar");
  const auto params = imported.model.net->named_parameters();
  EXPECT_EQ(params.size(), checkpoint.state_dict.size());
  for (const auto& [name, tensor] : checkpoint.state_dict) {
    const auto* param = params.find(name.substr(std::string("module.").size()));
    ASSERT_NE(param, nullptr) << name;
    EXPECT_TRUE(torch::equal(*param, tensor)) << name;
  }
}

TEST_P(FixtureCheckpoint, TruncatedOrBitFlippedInputEndsInAnError) {
  const auto original = read_bytes(checkpoint_dir(GetParam()) + "/model_best.pth.tar");
  // Every cut in the pickle part and in the zip's central directory, then every 31st byte.
  for (std::size_t size = 0; size < original.size(); size += (size < 4000 || size + 1600 > original.size()) ? 1 : 31) {
    const std::vector<std::uint8_t> cut(original.begin(), original.begin() + size);
    const auto error = read_error(cut);
    EXPECT_NE(error, "(read)") << "cut at " << size;
    EXPECT_EQ(error.rfind("test.pth.tar", 0), 0u) << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
  // A flipped bit may land in a weight and give a readable file; it must never crash.
  std::mt19937 random(7);
  int errors = 0;
  for (int trial = 0; trial < 1000; ++trial) {
    auto flipped = original;
    flipped[random() % flipped.size()] ^= std::uint8_t(1u << (random() % 8));
    const auto error = read_error(flipped);
    if (error != "(read)") {
      ++errors;
      EXPECT_EQ(error.find('\n'), std::string::npos) << error;
    }
  }
  EXPECT_GT(errors, 0);
}

INSTANTIATE_TEST_SUITE_P(AuthorsCheckpoints, FixtureCheckpoint,
                         ::testing::Values("legacy_text_k2", "zip_full_k3", "legacy_weight_norm_image_k2"));

TEST(Checkpoint, RefusesAPickleThatCallsOsSystemInEitherFormat) {
  const auto legacy = read_error(legacy_with_pickle(kOsSystem));
  EXPECT_NE(legacy.find("refused: the pickle references the global 'os.system'"), std::string::npos) << legacy;
  const auto zip = read_error(zip_with_records({{"data.pkl", kOsSystem}}));
  EXPECT_NE(zip.find("'os.system'"), std::string::npos) << zip;
}

TEST(Checkpoint, RefusesCompressedRecordsAndMissingStorages) {
  // A compressed record could state gigabytes of content in a few bytes; torch.save never writes one.
  const auto compressed = read_error(zip_with_records({{"data.pkl", std::string(4096, 'N')}}, true));
  EXPECT_NE(compressed.find("compressed"), std::string::npos) << compressed;
  // A tensor whose storage record is absent.
  const auto pickle =
      "\x80\x02}X\x05\x00\x00\x00modelccollections\nOrderedDict\n)RX\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_"
      "v2\n"
      "((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
      "0X\x03\x00\x00\x00"
      "cpuK\x04tQK\x00K\x04\x85K\x01\x85"
      "\x89}tRss."s;
  const auto missing = read_error(zip_with_records({{"data.pkl", pickle}}));
  EXPECT_NE(missing.find("storage record 'data/0' is missing"), std::string::npos) << missing;
  // The same tensor reading past its storage's 4 elements.
  auto overrun = pickle;
  overrun.replace(overrun.find("K\x00K\x04\x85"s), 5, "K\x01K\x04\x85"s);
  const auto past = read_error(zip_with_records({{"data.pkl", overrun}, {"data/0", std::string(16, '\0')}}));
  EXPECT_NE(past.find("reads element 4 of a storage of 4"), std::string::npos) << past;
}

TEST(Checkpoint, OptionsThatDoNotFitTheWeightsAreAnError) {
  // embed_size 16 -> 17 in the legacy file's opt: every weight's shape disagrees with it.
  auto bytes = read_bytes(checkpoint_dir("legacy_text_k2") + "/model_best.pth.tar");
  const std::string needle = "embed_size";
  const auto at = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());  // in 'opt'
  ASSERT_NE(at, bytes.end());
  const auto value = at + needle.size() + 2;  // BINPUT n, then BININT1 16
  ASSERT_EQ(*value, 'K');
  ASSERT_EQ(*(value + 1), 16);
  *(value + 1) = 17;
  imram::test::TempDir dir;
  std::ofstream(dir.file("bad.pth.tar"), std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  try {
    imram::import_checkpoint(dir.file("bad.pth.tar"));
    FAIL() << "imported a checkpoint whose options do not fit its weights";
  } catch (const imram::Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "weight 'img_enc.fc_local.weight' has shape [16, 20], the options in 'opt' make it [17, 20]"),
              std::string::npos)
        << e.what();
  }
}

TEST(Checkpoint, WeightNormImageLayerHasTheAuthorsNames) {
  imram::ModelConfig config;
  config.vocab_size = 10;
  config.embed_size = 8;
  config.word_dim = 4;
  config.img_dim = 6;
  config.image_encoder = imram::ImageEncoderType::WeightNorm;
  imram::ImramModel net(config);
  const auto params = net->named_parameters();
  ASSERT_TRUE(params.contains("img_enc.fc_local.weight_g"));
  EXPECT_EQ(params["img_enc.fc_local.weight_g"].dim(), 0);
  EXPECT_EQ(params["img_enc.fc_local.weight_v"].sizes(), torch::IntArrayRef({8, 6}));
  EXPECT_EQ(params["img_enc.fc_local.bias"].sizes(), torch::IntArrayRef({8}));
  for (const auto& item : params) EXPECT_EQ(item.key().rfind("img_enc.fc.", 0), std::string::npos) << item.key();
}

}  // namespace
