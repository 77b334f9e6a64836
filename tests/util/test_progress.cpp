// Progress of long work (util/progress.h): off a terminal (as under CTest) plain log lines on
// stderr, the last one with the total time; an ETA extrapolated from the rate so far.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <regex>
#include <string>
#include <thread>

#include "imram/util/progress.h"

TEST(Progress, DurationsReadAsPeopleWriteThem) {
  EXPECT_EQ(imram::format_duration(0), "0s");
  EXPECT_EQ(imram::format_duration(12.4), "12s");
  EXPECT_EQ(imram::format_duration(185), "3m05s");
  EXPECT_EQ(imram::format_duration(3720), "1h02m");
  EXPECT_EQ(imram::format_duration(-1), "?");
  EXPECT_EQ(imram::format_duration(INFINITY), "?");
}

TEST(Progress, TheEtaExtrapolatesTheRateSoFar) {
  imram::ProgressBar bar("work", 100, "items", /*enabled=*/false);
  EXPECT_LT(bar.eta_seconds(), 0);  // nothing done: unknown
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  bar.update(25);
  // A quarter done in the time so far: three times as long again, read at the same instant.
  const double eta = bar.eta_seconds(), elapsed = bar.elapsed_seconds();
  EXPECT_NEAR(eta, 3 * elapsed, 0.05 * eta);
}

TEST(Progress, OffATerminalTheLastLineSaysTheTotalAndItsTime) {
  testing::internal::CaptureStderr();
  {
    imram::ProgressBar bar("scoring test", 40, "pairs");
    bar.update(40);
    bar.finish("done");
  }
  const auto said = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(
      std::regex_search(said, std::regex(R"(^scoring test: 40/40 \(100%\)  [0-9.e+]+ pairs/s  in [0-9]+s  done\n$)")))
      << said;
  testing::internal::CaptureStderr();
  {
    imram::ProgressBar quiet("scoring test", 40, "pairs", /*enabled=*/false);
    quiet.update(40);
    quiet.finish();
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}
