#include "imram/util/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "imram/util/interruption.h"

namespace imram {

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds)) return "?";
  char buffer[32];
  const long total = std::lround(seconds);
  if (total >= 3600)
    std::snprintf(buffer, sizeof buffer, "%ldh%02ldm", total / 3600, (total % 3600) / 60);
  else if (total >= 60)
    std::snprintf(buffer, sizeof buffer, "%ldm%02lds", total / 60, total % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%lds", total);
  return buffer;
}

ProgressBar::ProgressBar(std::string label, std::int64_t total, std::string unit, bool enabled)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      enabled_(enabled),
      terminal_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (enabled_ && terminal_ && !finished_ && done_ > 0) std::fputs("\n", stderr);
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double ProgressBar::eta_seconds() const {
  if (done_ <= 0 || total_ <= 0) return -1;
  return elapsed_seconds() * double(total_ - done_) / double(done_);
}

void ProgressBar::update(std::int64_t done, const std::string& status) {
  // Every long loop reports its progress: the one place that sees them all between blocks.
  throw_if_interrupted();
  done_ = done;
  status_ = status;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  // The final state is drawn by finish(); plain logs get a line every 10 s, terminals 5 per second.
  if (done >= total_ || since < (terminal_ ? 0.2 : 10.0)) return;
  last_draw_ = now;
  draw(false);
}

void ProgressBar::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  draw(true);
}

void ProgressBar::draw(bool final_line) {
  if (!enabled_) return;
  const double elapsed = elapsed_seconds();
  const double rate = elapsed > 0 ? double(done_) / elapsed : 0;
  const double fraction = total_ > 0 ? std::min(1.0, double(done_) / double(total_)) : 0;
  char rate_text[64];
  std::snprintf(rate_text, sizeof rate_text, "%.4g %s/s", rate, unit_.c_str());
  const std::string timing = final_line ? "in " + format_duration(elapsed) : "ETA " + format_duration(eta_seconds());
  if (terminal_) {
    constexpr int kWidth = 24;
    const int filled = int(fraction * kWidth);
    std::string bar(std::size_t(filled), '#');
    bar.append(std::size_t(kWidth - filled), '.');
    std::fprintf(stderr, "\r\033[K%s [%s] %3d%% %lld/%lld  %s  %s%s%s", label_.c_str(), bar.c_str(),
                 int(fraction * 100), (long long)done_, (long long)total_, rate_text, timing.c_str(),
                 status_.empty() ? "" : "  ", status_.c_str());
    if (final_line) std::fputs("\n", stderr);
  } else {
    std::fprintf(stderr, "%s: %lld/%lld (%d%%)  %s  %s%s%s\n", label_.c_str(), (long long)done_, (long long)total_,
                 int(fraction * 100), rate_text, timing.c_str(), status_.empty() ? "" : "  ", status_.c_str());
  }
  std::fflush(stderr);
}

}  // namespace imram
