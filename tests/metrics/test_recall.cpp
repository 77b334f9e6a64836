#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "imram/data/npy.h"
#include "imram/error.h"
#include "imram/metrics/recall.h"
#include "test_util.h"

namespace {

TEST(Recall, MatchesTheAuthorsProtocolExactlyOnFixtureMetrics40) {
  const auto dir = imram::test::testdata("reference/metrics_40");
  const auto sims = imram::test::read_npy_as_double(dir + "/inputs/sims.npy");
  const auto ranks = imram::retrieval_ranks(sims.data(), 40, 200, 5, 2);
  EXPECT_EQ(ranks.i2t, imram::test::read_npy_as_int64(dir + "/expected/i2t_ranks.npy"));
  EXPECT_EQ(ranks.t2i, imram::test::read_npy_as_int64(dir + "/expected/t2i_ranks.npy"));
  const auto m = imram::metrics_from_ranks(ranks);
  EXPECT_EQ(m.i2t.r1, 45.0);
  EXPECT_EQ(m.i2t.r5, 70.0);
  EXPECT_EQ(m.i2t.r10, 72.5);
  EXPECT_EQ(m.i2t.medr, 2.0);
  EXPECT_DOUBLE_EQ(m.i2t.meanr, 10.075);
  EXPECT_EQ(m.t2i.r1, 27.0);
  EXPECT_EQ(m.t2i.r5, 50.5);
  EXPECT_EQ(m.t2i.r10, 68.5);
  EXPECT_EQ(m.t2i.medr, 5.0);
  EXPECT_DOUBLE_EQ(m.t2i.meanr, 9.575);
  EXPECT_DOUBLE_EQ(m.rsum, 333.5);
}

// The JSON of the fixture's metrics (the authors' numbers), field by field and in the documented
// order (the README's JSON output): a swapped field or key fails.
TEST(Recall, JsonHasTheDocumentedSchema) {
  const auto dir = imram::test::testdata("reference/metrics_40");
  const auto sims = imram::test::read_npy_as_double(dir + "/inputs/sims.npy");
  const auto json = nlohmann::ordered_json::parse(imram::metrics_json(imram::compute_metrics(sims.data(), 40, 200, 5)));
  const auto expected = nlohmann::ordered_json::parse(
      R"({"i2t": {"r1": 45.0, "r5": 70.0, "r10": 72.5, "medr": 2.0, "meanr": 10.075},)"
      R"( "t2i": {"r1": 27.0, "r5": 50.5, "r10": 68.5, "medr": 5.0, "meanr": 9.575}, "rsum": 333.5})");
  EXPECT_EQ(json.dump(), expected.dump());
}

TEST(Recall, PerfectScoresGiveRankZeroEverywhere) {
  // 3 images x 15 captions, each image's own captions score 1, others 0.
  std::vector<double> sims(3 * 15, 0.0);
  for (int i = 0; i < 3; ++i)
    for (int c = 0; c < 5; ++c) sims[i * 15 + i * 5 + c] = 1.0;
  const auto m = imram::compute_metrics(sims.data(), 3, 15, 5);
  EXPECT_EQ(m.i2t.r1, 100.0);
  EXPECT_EQ(m.t2i.r1, 100.0);
  EXPECT_EQ(m.rsum, 600.0);
  EXPECT_EQ(m.i2t.medr, 1.0);
}

TEST(Recall, RefusesNonFiniteScoresInsteadOfRankingThemFirst) {
  for (const double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    std::vector<double> sims(3 * 15, bad);
    EXPECT_THROW(imram::compute_metrics(sims.data(), 3, 15, 5), imram::Error);
    std::vector<double> one_bad(3 * 15, 0.5);
    one_bad[2 * 15 + 7] = bad;
    try {
      imram::compute_metrics(one_bad.data(), 3, 15, 5);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const imram::Error& e) {
      EXPECT_NE(std::string(e.what()).find("image 2 and caption 7"), std::string::npos) << e.what();
    }
  }
  std::vector<double> sims(5 * 25, std::nan(""));
  EXPECT_THROW(imram::compute_metrics_fold5(sims.data(), 5, 25, 5), imram::Error);
}

// A collapsed model (--lr 1e30) scores every pair alike: that is no retrieval at all, and a
// strict "score > own" count made it perfect retrieval (rsum 600).
TEST(Recall, TiesCountAgainstTheItemSoConstantScoresRankLast) {
  std::vector<double> constant(4 * 20, 0.5);
  const auto m = imram::compute_metrics(constant.data(), 4, 20, 5);
  EXPECT_EQ(m.i2t.r1, 0.0);
  EXPECT_EQ(m.t2i.r1, 0.0);
  EXPECT_EQ(m.i2t.medr, 16.0);  // 15 other captions tie with the best own one
  EXPECT_EQ(m.t2i.medr, 4.0);   // 3 other images tie with the own one
  EXPECT_LT(m.rsum, 600.0);
  // A tie among an image's own captions is no loss: ranks stay 0.
  std::vector<double> sims(3 * 15, 0.0);
  for (int i = 0; i < 3; ++i)
    for (int c = 0; c < 5; ++c) sims[i * 15 + i * 5 + c] = 1.0;
  EXPECT_EQ(imram::compute_metrics(sims.data(), 3, 15, 5).rsum, 600.0);
}

TEST(Recall, Fold5AveragesFiveIndependentBlocks) {
  // 10 images, 50 captions: fold 0 perfect, the rest reversed; off-block scores must not matter.
  const int N = 10, M = 50;
  std::vector<double> sims(N * M, 100.0);
  for (int fold = 0; fold < 5; ++fold)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 10; ++j) {
        const int image = fold * 2 + i, caption = fold * 10 + j;
        const bool own = j / 5 == i;
        sims[image * M + caption] = (fold == 0) == own ? 1.0 : 0.0;
      }
  const auto m = imram::compute_metrics_fold5(sims.data(), N, M, 5);
  EXPECT_DOUBLE_EQ(m.i2t.r1, 20.0);
  EXPECT_DOUBLE_EQ(m.t2i.r1, 20.0);
  EXPECT_THROW(imram::compute_metrics_fold5(sims.data(), 9, 45, 5), imram::Error);
}

TEST(Recall, RejectsCaptionCountsThatAreNotOneOrFivePerImage) {
  EXPECT_EQ(imram::captions_per_image_for(4, 20, "x"), 5);
  EXPECT_EQ(imram::captions_per_image_for(4, 4, "x"), 1);
  EXPECT_THROW(imram::captions_per_image_for(4, 12, "x"), imram::Error);
}

}  // namespace
