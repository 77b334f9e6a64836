#pragma once
// Where the library's messages go: notes (what long work is doing: "learning a codebook ...",
// a validation's figures), warnings (input read with a repair, a cache not written) and errors
// (a rank of a world failed). One sink for every program built on the library: the command line
// and the server keep the default, standard error with the command line's prefixes; the Python
// module installs its own (Python's warnings). Progress bars (util/progress.h) are drawn apart.
#include <functional>
#include <string>

namespace imram {

enum class LogLevel { Note, Warning, Error };

using LogSink = std::function<void(LogLevel level, const std::string& line)>;

// Replaces the sink for the whole process (an empty one restores the default). A sink may be
// called from several threads at once.
void set_log_sink(LogSink sink);

// The default sink's line: a note as it is, "imram: warning: ..." and "imram: error: ...".
std::string default_log_line(LogLevel level, const std::string& line);

void log_note(const std::string& line);
void log_warning(const std::string& line);
void log_error(const std::string& line);

}  // namespace imram
