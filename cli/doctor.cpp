#include <iostream>

#include "command.h"
#include "imram/engine/doctor.h"

void imram::cli::add_doctor_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  auto* sub = root.add_subcommand("doctor", "LibTorch version, BLAS, threads, devices, GFLOP/s");
  auto json = std::make_shared<bool>(false);
  sub->add_flag("--json", *json, "print one JSON line");
  sub->callback([&invocation, json] {
    invocation.run = [json] {
      const auto report = imram::run_doctor();
      std::cout << (*json ? imram::doctor_json(report) + "\n" : imram::doctor_text(report));
      return 0;
    };
  });
}
