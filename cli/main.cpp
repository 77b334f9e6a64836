#include <iostream>
#include <vector>

#include "command.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"

namespace imram::cli {

namespace {
std::vector<CommandSetup>& registry() {
  static std::vector<CommandSetup> commands;
  return commands;
}
}  // namespace

bool register_command(CommandSetup setup) {
  registry().push_back(std::move(setup));
  return true;
}

}  // namespace imram::cli

int main(int argc, char** argv) {
  using namespace imram::cli;
  CLI::App app{"imram: cross-modal image-text retrieval with IMRAM (CVPR 2020)"};
  app.require_subcommand(1);
  app.fallthrough();
  app.set_version_flag("--version", "imram 0.1.0");
  Invocation invocation;
  app.add_option("--threads", invocation.globals.threads,
                 "compute threads (default: all cores)");
  app.add_option("--device", invocation.globals.device, "cpu, cuda or cuda:N")
      ->capture_default_str();
  for (auto& setup : registry()) setup(app, invocation);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    imram::set_thread_count(invocation.globals.threads);
    imram::parse_device(invocation.globals.device);
    return invocation.run ? invocation.run() : 0;
  } catch (const imram::Error& e) {
    std::cerr << "imram: error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "imram: error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "imram: error: " << e.what() << "\n";
  }
  return 1;
}
