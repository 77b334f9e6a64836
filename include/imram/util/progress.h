#pragma once
// Progress of long work on stderr: a redrawn bar with rate and ETA on a terminal, plain log
// lines (at most one every few seconds) otherwise, so that logs stay readable.
#include <chrono>
#include <cstdint>
#include <string>

namespace imram {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::int64_t total, std::string unit = "items", bool enabled = true);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Sets the absolute amount done; `status` is appended (e.g. "loss 12.3").
  void update(std::int64_t done, const std::string& status = "");
  void finish(const std::string& status = "");
  double elapsed_seconds() const;
  // Seconds left, extrapolated from the rate so far (negative when unknown).
  double eta_seconds() const;

 private:
  void draw(bool final_line);

  std::string label_;
  std::int64_t total_;
  std::string unit_;
  bool enabled_;
  bool terminal_;
  bool finished_ = false;
  std::int64_t done_ = 0;
  std::string status_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"

}  // namespace imram
