#include "imram/util/log.h"

#include <cstdio>
#include <mutex>

namespace imram {

namespace {

std::mutex& sink_mutex() {
  static std::mutex mutex;
  return mutex;
}

LogSink& installed_sink() {
  static LogSink sink;
  return sink;
}

void emit(LogLevel level, const std::string& line) {
  LogSink sink;
  {
    const std::lock_guard<std::mutex> lock(sink_mutex());
    sink = installed_sink();
  }
  // Called outside the lock: a sink that waits for something (Python's interpreter lock) must
  // not hold up the threads that only replace it.
  if (sink) {
    sink(level, line);
    return;
  }
  // One write per line, so that lines of several threads do not interleave.
  const auto text = default_log_line(level, line) + "\n";
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace

void set_log_sink(LogSink sink) {
  const std::lock_guard<std::mutex> lock(sink_mutex());
  installed_sink() = std::move(sink);
}

std::string default_log_line(LogLevel level, const std::string& line) {
  switch (level) {
    case LogLevel::Warning:
      return "imram: warning: " + line;
    case LogLevel::Error:
      return "imram: error: " + line;
    case LogLevel::Note:
      break;
  }
  return line;
}

void log_note(const std::string& line) { emit(LogLevel::Note, line); }
void log_warning(const std::string& line) { emit(LogLevel::Warning, line); }
void log_error(const std::string& line) { emit(LogLevel::Error, line); }

}  // namespace imram
