// The command line as users meet it: exit codes, one-line errors naming the file, and the
// import + score path reproducing the authors' scores.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "imram/data/npy.h"
#include "imram/model/tensor_io.h"
#include "npy_tensor.h"
#include "test_util.h"

namespace {

using imram::test::CommandResult;

CommandResult run_imram(const std::string& arguments, const std::string& stdin_text = "") {
  imram::test::TempDir dir;
  std::string command = std::string(IMRAM_BINARY) + " --threads 1 " + arguments;
  if (!stdin_text.empty()) {
    std::ofstream(dir.file("stdin.txt")) << stdin_text;
    command += " < " + dir.file("stdin.txt");
  }
  return imram::test::run_shell(command);
}

void expect_one_line_error(const CommandResult& result, const std::string& mention) {
  EXPECT_NE(result.status, 0) << result.output;
  EXPECT_EQ(result.output.rfind("imram: error: ", 0), 0u) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
  EXPECT_NE(result.output.find(mention), std::string::npos) << result.output;
}

class ImportAndScore : public ::testing::TestWithParam<std::string> {};

TEST_P(ImportAndScore, ReproducesTheAuthorsScoresFromTheCommandLine) {
  imram::test::TempDir dir;
  const auto fixture = imram::test::testdata("reference/" + GetParam());
  auto result = run_imram("import " + fixture + " --out " + dir.file("model"));
  ASSERT_EQ(result.status, 0) << result.output;
  result = run_imram("score --model " + dir.file("model") + " --images " + fixture +
                     "/inputs/images.npy --caption-ids " + fixture + "/inputs/captions.npy --lengths " + fixture +
                     "/inputs/lengths.npy --out " + dir.file("sims.npy"));
  ASSERT_EQ(result.status, 0) << result.output;
  const auto sims = imram::test::load_npy_tensor(dir.file("sims.npy"));
  EXPECT_EQ(sims.scalar_type(), torch::kFloat64);
  const auto expected = imram::test::load_npy_tensor(fixture + "/expected/sims.npy");
  EXPECT_LE((sims - expected).abs().max().item<double>(), 1e-5);

  // export + import again is lossless
  ASSERT_EQ(run_imram("export " + dir.file("model") + " --out " + dir.file("ref")).status, 0);
  ASSERT_EQ(run_imram("import " + dir.file("ref") + " --out " + dir.file("model2")).status, 0);
  for (const char* name : {"img_enc.fc_local.weight", "txt_enc.rnn.weight_hh_l0_reverse", "gate_i2t.bias"}) {
    const auto a = imram::test::load_npy_tensor(fixture + "/weights/" + name + ".npy");
    const auto b = imram::test::load_npy_tensor(dir.file("model2/weights/") + name + ".npy");
    EXPECT_TRUE(torch::equal(a, b)) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(ReferenceFixtures, ImportAndScore,
                         ::testing::Values("text_k3_norm", "image_k3", "full_k2_lambda4"));

class ImportCheckpointAndScore : public ::testing::TestWithParam<std::string> {};

TEST_P(ImportCheckpointAndScore, ReproducesTheAuthorsScoresFromTheirCheckpoint) {
  imram::test::TempDir dir;
  const auto fixture = imram::test::testdata("checkpoints/" + GetParam());
  auto result = run_imram("import " + fixture + "/model_best.pth.tar --vocab " + fixture + "/vocab.json --out " +
                          dir.file("model"));
  ASSERT_EQ(result.status, 0) << result.output;
  std::ifstream case_file(fixture + "/case.json");
  const auto expected_case = nlohmann::json::parse(case_file);
  EXPECT_NE(
      result.output.find("epoch " + expected_case["epoch"].dump() + ", best_rsum " + expected_case["best_rsum"].dump()),
      std::string::npos)
      << result.output;
  std::ifstream metadata(dir.file("model/metadata.json"));
  const auto json = nlohmann::json::parse(metadata);
  EXPECT_EQ(json["epoch"], expected_case["epoch"]);
  EXPECT_EQ(json["best_rsum"], expected_case["best_rsum"]);
  result = run_imram("score --model " + dir.file("model") + " --images " + fixture +
                     "/inputs/images.npy --caption-ids " + fixture + "/inputs/captions.npy --lengths " + fixture +
                     "/inputs/lengths.npy --out " + dir.file("sims.npy"));
  ASSERT_EQ(result.status, 0) << result.output;
  const auto sims = imram::test::load_npy_tensor(dir.file("sims.npy"));
  const auto expected = imram::test::load_npy_tensor(fixture + "/expected/sims.npy");
  ASSERT_EQ(sims.sizes(), expected.sizes());
  EXPECT_LE((sims - expected).abs().max().item<double>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(AuthorsCheckpoints, ImportCheckpointAndScore,
                         ::testing::Values("legacy_text_k2", "zip_full_k3", "legacy_weight_norm_image_k2"));

TEST(Cli, ImportRefusesACheckpointThatWouldRunCodeAndWritesNothing) {
  imram::test::TempDir dir;
  // The legacy fixture's header (magic, protocol, system info), then a pickle calling
  // os.system("touch <dir>/pwned") as Python's pickle.load would.
  std::ifstream in(imram::test::testdata("checkpoints/legacy_text_k2/model_best.pth.tar"), std::ios::binary);
  std::string bytes(137, '\0');
  in.read(bytes.data(), 137);
  const std::string command = "touch " + dir.file("pwned");
  bytes +=
      std::string("\x80\x02\x63os\nsystem\nX", 13) + char(command.size()) + std::string(3, '\0') + command + "\x85R.";
  std::ofstream(dir.file("evil.pth.tar"), std::ios::binary) << bytes;
  expect_one_line_error(run_imram("import " + dir.file("evil.pth.tar") + " --out " + dir.file("model")),
                        dir.file("evil.pth.tar") + ": refused: the pickle references the global 'os.system'");
  EXPECT_FALSE(std::filesystem::exists(dir.file("model")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("pwned")));
  // The fixture cut inside its storages.
  in.seekg(0);
  std::string cut(20000, '\0');
  in.read(cut.data(), cut.size());
  std::ofstream(dir.file("cut.pth.tar"), std::ios::binary) << cut;
  expect_one_line_error(run_imram("import " + dir.file("cut.pth.tar") + " --out " + dir.file("model")), "truncated");
}

TEST(Cli, MetricsMatchesTheFixtureAsJson) {
  const auto result =
      run_imram("metrics --json --sims " + imram::test::testdata("reference/metrics_40/inputs/sims.npy"));
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(result.output,
            "{\"i2t\":{\"r1\":45.0,\"r5\":70.0,\"r10\":72.5,\"medr\":2.0,\"meanr\":10.075},"
            "\"t2i\":{\"r1\":27.0,\"r5\":50.5,\"r10\":68.5,\"medr\":5.0,\"meanr\":9.575},\"rsum\":333.5}\n");
}

TEST(Cli, TokenizePrintsOneLinePerCaption) {
  const auto result = run_imram("tokenize", "A dog doesn't run.\nTwo \"big\" cats\n");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(result.output, "a dog does n't run .\ntwo `` big '' cats\n");
}

TEST(Cli, BadInputGivesOneLineErrorsNamingTheFile) {
  imram::test::TempDir dir;
  std::ofstream(dir.file("garbage.npy")) << "not an array";
  expect_one_line_error(run_imram("metrics --sims " + dir.file("garbage.npy")), dir.file("garbage.npy"));
  imram::write_npy(dir.file("odd.npy"), {2, 7}, std::vector<double>(14, 0.0));
  expect_one_line_error(run_imram("metrics --sims " + dir.file("odd.npy")), dir.file("odd.npy"));
  expect_one_line_error(run_imram("eval --model " + dir.file("nope") + " --data " + dir.path()), dir.file("nope"));

  // A model whose config has an unknown key, and one whose weights have the wrong shape.
  const auto fixture = imram::test::testdata("reference/image_k3");
  ASSERT_EQ(run_imram("import " + fixture + " --out " + dir.file("m")).status, 0);
  std::ofstream(dir.file("m/config.json")) << "{\"mode\": \"text\", \"embed_sise\": 16}";
  expect_one_line_error(run_imram("export " + dir.file("m") + " --out " + dir.file("r")), "embed_sise");
  std::ofstream(dir.file("m/config.json")) << "{\"mode\": \"text\", \"embed_size\": \"16\"}";
  expect_one_line_error(run_imram("export " + dir.file("m") + " --out " + dir.file("r")), "embed_size");
  ASSERT_EQ(run_imram("import " + fixture + " --out " + dir.file("m2")).status, 0);
  imram::write_npy(dir.file("m2/weights/gate_i2t.bias.npy"), {3}, std::vector<float>{1, 2, 3});
  expect_one_line_error(run_imram("export " + dir.file("m2") + " --out " + dir.file("r")), "gate_i2t.bias");

  // Caption ids outside the vocabulary, NaN features, a vocabulary that does not fit.
  ASSERT_EQ(run_imram("import " + fixture + " --out " + dir.file("m3")).status, 0);
  imram::write_npy(dir.file("ids.npy"), {1, 3}, std::vector<std::int64_t>{1, 999, 2});
  imram::write_npy(dir.file("len.npy"), {1}, std::vector<std::int64_t>{3});
  expect_one_line_error(
      run_imram("score --model " + dir.file("m3") + " --images " + fixture + "/inputs/images.npy --caption-ids " +
                dir.file("ids.npy") + " --lengths " + dir.file("len.npy") + " --out " + dir.file("s.npy")),
      "999");
  auto images = imram::test::load_npy_tensor(fixture + "/inputs/images.npy");
  images[2][3][4] = std::nanf("");
  imram::save_npy_tensor(dir.file("nan.npy"), images);
  expect_one_line_error(
      run_imram("score --model " + dir.file("m3") + " --images " + dir.file("nan.npy") + " --caption-ids " + fixture +
                "/inputs/captions.npy --lengths " + fixture + "/inputs/lengths.npy --out " + dir.file("s.npy")),
      "image 2");
  expect_one_line_error(run_imram("import " + fixture + " --vocab " +
                                  imram::test::testdata("vocab/f30k_precomp_vocab.json") + " --out " + dir.file("m4")),
                        "8481");
  // No machine has a hundredth GPU; without CUDA the message says that instead.
  const auto doctor = run_imram("--device cuda:99 doctor");
  expect_one_line_error(doctor, "CUDA");
  // --device reaches `index build` too: the same line, and nothing built.
  ASSERT_EQ(
      run_imram("synth --out " + dir.file("shapes") + " --train 2 --dev 2 --test 2 --regions 8 --feat-dim 16").status,
      0);
  const auto build = run_imram("--device cuda:99 index build --model " + dir.file("m3") + " --data " +
                               dir.file("shapes") + " --split test --out " + dir.file("index") + " --quiet");
  EXPECT_NE(build.status, 0);
  EXPECT_EQ(build.output, doctor.output);
  EXPECT_FALSE(std::filesystem::exists(dir.file("index")));
}

}  // namespace

namespace {
std::vector<std::string> openmp_waiting_of_doctor(const std::string& environment) {
  const auto result = imram::test::run_shell("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT " + environment + " " +
                                             IMRAM_BINARY + " --threads 1 doctor --json");
  EXPECT_EQ(result.status, 0) << result.output;
  return nlohmann::json::parse(result.output).at("openmp_waiting").get<std::vector<std::string>>();
}
}  // namespace

// libgomp reads its settings before main: imram's default only counts if the process that runs
// was started with it, and a user's own setting must reach libgomp untouched.
// `imram bench score`, which every scoring figure comes from: its own check against the authors'
// algorithm holds (a wrong engine shows there), and its rate is the pairs it scored over the time.
TEST(Bench, ScoreAgreesWithTheAuthorsAlgorithmAndCountsItsPairs) {
  const auto result = imram::test::imram_cli(
      "--threads 1 bench score --mode full --steps 3 --embed 16 --regions 6 --images 6 --captions 20 "
      "--baseline-pairs 40 --json");
  ASSERT_EQ(result.status, 0) << result.output;
  const auto json = nlohmann::json::parse(result.output.substr(result.output.find('{')));
  EXPECT_EQ(json["bench"], "score");
  EXPECT_LE(json["max_abs_diff_vs_baseline"].get<double>(), 1e-5) << json.dump();
  EXPECT_GT(json["baseline_pairs_per_s"].get<double>(), 0) << json.dump();
  const double pairs = json["pairs_per_s"].get<double>() * json["seconds"].get<double>();
  EXPECT_NEAR(pairs, 6.0 * 20.0, 1e-6 * 120) << json.dump();
  EXPECT_NEAR(json["gflops"].get<double>(),
              json["pairs_per_s"].get<double>() * json["flops_per_pair"].get<double>() / 1e9,
              1e-9 + 1e-6 * json["gflops"].get<double>())
      << json.dump();
}

// `imram bench search --commit-every N` builds its gallery as a build of the first part and
// additions of the rest (how a gallery larger than the scratch store is built without its
// exact store): every image ends in the index, one FAISS generation per commit, each file the
// size its counts need, the answers approximate. Its image queries run with the lists
// `imram search --image` picks on the same index.
TEST(Bench, SearchBuiltInPartsHoldsEveryImage) {
  imram::test::TempDir dir;
  const auto result = imram::test::imram_cli(
      "--threads 1 bench search --images 600 --embed 16 --regions 4 --feat-dim 8 --captions 40 --queries 3 "
      "--image-queries 2 --exhaustive-queries 1 --no-exact-store --commit-every 256 --quiet --dir " +
      dir.file("bench"));
  ASSERT_EQ(result.status, 0) << result.output;
  const auto json = nlohmann::json::parse(result.output.substr(result.output.find('{')));
  EXPECT_EQ(json["images"], 600);
  EXPECT_EQ(json["exact_store"], false);
  const auto manifest = nlohmann::json::parse(imram::test::read_text(dir.file("bench/index/manifest.json")));
  EXPECT_EQ(json["residual_bytes"], (600 * 4 + manifest["words"].get<std::int64_t>()) * 16 * 2 / 8) << json.dump();
  EXPECT_EQ(manifest["images"], 600);
  EXPECT_EQ(manifest["generation"], 3);  // commits after 256, 512 and 600 images
  EXPECT_FALSE(std::filesystem::exists(dir.file("bench/index/regions.bin")));
  const auto verify = imram::test::imram_cli("index verify " + dir.file("bench/index"));
  EXPECT_EQ(verify.status, 0) << verify.output;
  const auto& images = json["image_queries"];
  ASSERT_TRUE(images.is_object()) << json.dump();
  EXPECT_EQ(images["queries"], 2);
  EXPECT_LE(images["p50_ms"].get<double>(), images["p99_ms"].get<double>());
  const auto search =
      imram::test::imram_cli("--threads 1 search --index " + dir.file("bench/index") + " --image 7 --json");
  ASSERT_EQ(search.status, 0) << search.output;
  const auto searched = nlohmann::json::parse(search.output.substr(search.output.find('{')));
  EXPECT_EQ(images["shortlist"], searched["shortlist"]) << searched.dump();
  EXPECT_EQ(images["shortlist"], 40);  // every caption: the automatic list's floor of 100 meets the gallery
}

// `imram doctor` names the BLAS whose sgemm the products run on and calls netlib's reference BLAS
// slow. Debian's netlib BLAS (libblas3, in the multiarch folder's blas/, what the alternatives fall
// back to) put ahead of OpenBLAS by the library path replaces it for the products, while LAPACK
// still maps OpenBLAS: the doctor must name the one the products call.
TEST(Doctor, NamesTheBlasOfTheProductsAndWarnsOfTheReferenceOne) {
  const auto doctor = [](const std::string& environment) {
    const auto result = imram::test::run_shell(environment + " " + IMRAM_BINARY + " --threads 1 doctor --json");
    EXPECT_EQ(result.status, 0) << result.output;
    return nlohmann::json::parse(result.output.substr(result.output.find('{')));
  };
  const auto usual = doctor("");
  const std::filesystem::path openblas = usual["blas_library"].get<std::string>();
  ASSERT_NE(openblas.string().find("openblas"), std::string::npos) << usual.dump();
  EXPECT_FALSE(usual["blas_is_reference"].get<bool>());
  EXPECT_TRUE(usual["warnings"].empty() || usual["warnings"].dump().find("netlib") == std::string::npos);
  const auto netlib = openblas.parent_path().parent_path() / "blas";
  ASSERT_TRUE(std::filesystem::exists(netlib / "libblas.so.3"))
      << netlib << ": netlib's BLAS (libblas3, which ./run setup installs) is missing";
  const auto reference = doctor("LD_LIBRARY_PATH=" + netlib.string());
  EXPECT_EQ(std::filesystem::path(reference["blas_library"].get<std::string>()).parent_path(), netlib)
      << reference.dump();
  EXPECT_TRUE(reference["blas_is_reference"].get<bool>()) << reference.dump();
  EXPECT_NE(reference["warnings"].dump().find("reference (netlib) BLAS"), std::string::npos) << reference.dump();
}

TEST(OpenMpWaiting, ImramChoosesTheSpinCountOnlyWhenTheUserChoseNothing) {
  EXPECT_EQ(openmp_waiting_of_doctor(""), std::vector<std::string>{"GOMP_SPINCOUNT=10000"});
  EXPECT_EQ(openmp_waiting_of_doctor("GOMP_SPINCOUNT=300000"), std::vector<std::string>{"GOMP_SPINCOUNT=300000"});
  EXPECT_EQ(openmp_waiting_of_doctor("OMP_WAIT_POLICY=active"), std::vector<std::string>{"OMP_WAIT_POLICY=active"});
}
