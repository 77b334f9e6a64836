#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <new>
#include <nlohmann/json.hpp>
#include <thread>

#include "command.h"
#include "imram/engine/matching.h"
#include "imram/error.h"
#include "imram/runtime/openmp_waiting.h"
#include "imram/runtime/runtime.h"
#include "imram/util/log.h"

namespace {
// Library messages (LibTorch's especially) can span lines; the convention is one line.
std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

// IMRAM_ENGINE_ROUTES=FILE appends one JSON line per run: the command and how many engine calls
// took each route (docs/engine.md#8-routes-and-how-they-are-tested). One write of one line, so that concurrent runs (the
// ranks of a world) append whole lines.
void report_engine_routes(int argc, char** argv) {
  const char* path = std::getenv("IMRAM_ENGINE_ROUTES");
  if (!path || !*path) return;
  nlohmann::ordered_json routes = nlohmann::ordered_json::object();
  for (const auto& [route, calls] : imram::engine_route_counts())
    if (calls > 0) routes[imram::to_string(route)] = calls;
  std::string command;
  for (int i = 1; i < argc; ++i) command += (i > 1 ? " " : "") + std::string(argv[i]);
  const auto line = nlohmann::ordered_json{{"command", command}, {"routes", routes}}.dump(
                        -1, ' ', false, nlohmann::json::error_handler_t::replace) +
                    "\n";
  const int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 || ::write(fd, line.data(), line.size()) != ssize_t(line.size()))
    imram::log_warning(std::string("IMRAM_ENGINE_ROUTES: cannot append to ") + path);
  if (fd >= 0) ::close(fd);
}
}  // namespace

int main(int argc, char** argv) {
  using namespace imram::cli;
  CLI::App app{"imram: cross-modal image-text retrieval with IMRAM (CVPR 2020)"};
  app.require_subcommand(1);
  app.fallthrough();
  app.set_version_flag("--version", "imram 0.1.0");
  Invocation invocation;
  // More threads than cores only adds contention: 64 on 2 cores made a 0.4 s eval take 30 s.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("--threads", invocation.globals.threads, "compute threads (default: all cores)")
      ->check(CLI::Range(0, cores, "0 (all cores) to " + std::to_string(cores)));
  app.add_option("--device", invocation.globals.device, "cpu, cuda or cuda:N")->capture_default_str();
  for (const auto add_command : kCommands) add_command(app, invocation);
  // Global options go before the subcommand; each subcommand's --help names them.
  const auto footer = "Global options (before or after the command): --threads N (0: all " + std::to_string(cores) +
                      " cores, at most " + std::to_string(cores) + "), --device cpu|cuda|cuda:N";
  std::function<void(CLI::App*)> add_footer = [&](CLI::App* command) {
    for (auto* sub : command->get_subcommands({})) {
      sub->footer(footer);
      add_footer(sub);  // index build, bench search, ...: their --help is what users read
    }
  };
  add_footer(&app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "imram: error: " << e.what() << " (see imram --help)\n";
    return kExitUsage;
  }
  if (!invocation.brief) imram::reexec_with_default_openmp_waiting(argv);
  int status = kExitError;
  try {
    imram::set_thread_count(invocation.globals.threads);
    imram::parse_device(invocation.globals.device);
    status = invocation.run ? invocation.run() : 0;
  } catch (const imram::Error& e) {
    std::cerr << "imram: error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "imram: error: " << first_line(e.what_without_backtrace()) << "\n";
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "imram: error: " << e.path1().string() << ": " << e.code().message() << "\n";
  } catch (const std::bad_alloc&) {
    std::cerr << "imram: error: out of memory (the input is larger than this machine can hold; "
                 "try a smaller --memory-budget, --threads or input)\n";
  } catch (const std::exception& e) {
    std::cerr << "imram: error: " << first_line(e.what()) << "\n";
  }
  report_engine_routes(argc, argv);
  return status;
}
