#pragma once
// Each subcommand lives in its own cli/<name>.cpp as add_<name>_command, listed in kCommands.
// A subcommand's CLI11 callback only records what to run; main() applies the global options
// (threads, device) first and then runs it, so every command sees the same runtime set-up.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <functional>
#include <string>

#include "imram/data/precomp_dataset.h"
#include "imram/error.h"
#include "imram/search/search_params.h"
#include "imram/train/launch.h"

namespace imram::cli {

// Exit codes (README, "Command line"): 0 done, 1 error (bad input, failed write, diverged
// training), 2 command-line usage error, 3 stopped by SIGINT/SIGTERM with its state saved.
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = ::imram::kInterruptedExitStatus;

// --memory-budget in MB: at least 1, and small enough that MB << 20 cannot wrap around.
inline const CLI::Range kMemoryBudgetRange(std::size_t(1), std::size_t(1) << 30, "1 MB to 1 PB");

// --cache-limit in MB, likewise bounded.
inline const CLI::Range kCacheLimitRange(std::uint64_t(0), std::uint64_t(1) << 40, "0 to 1 EB");

// CLI::NonNegativeNumber and PositiveNumber print the whole double range (309 digits) in their
// messages: these say the bound.
inline CLI::Validator at_least(double minimum, const std::string& description) {
  return CLI::Validator(
      [minimum](std::string& value) {
        char* end = nullptr;
        const double number = std::strtod(value.c_str(), &end);
        if (end == value.c_str() || *end != '\0') return std::string();  // the conversion reports it
        return number >= minimum ? std::string() : "must be >= " + CLI::detail::to_string(minimum) + ", got " + value;
      },
      description);
}
inline const CLI::Validator kNonNegative = at_least(0, "NUMBER >= 0");

// --split and its kin: a plain name (data/precomp_dataset.h), refused as a usage error before
// anything is read or written. kSplitNames: a comma-separated list of them.
inline std::string split_name_problem(const std::string& split) {
  try {
    imram::require_split_name(split);
    return {};
  } catch (const imram::Error& error) {
    return error.what();
  }
}
inline const CLI::Validator kSplitName([](std::string& value) { return split_name_problem(value); }, "NAME");
inline const CLI::Validator kSplitNames(
    [](std::string& value) {
      std::string::size_type begin = 0;
      while (begin <= value.size()) {
        const auto end = std::min(value.find(',', begin), value.size());
        if (end > begin)
          if (auto problem = split_name_problem(value.substr(begin, end - begin)); !problem.empty()) return problem;
        begin = end + 1;
      }
      return std::string();
    },
    "NAME,...");
inline const CLI::Validator kAtLeastOne = at_least(1, "N >= 1");

// A number of items (>= 0), or "auto": the default, which grows with the gallery. A transform,
// so that "auto" reaches the integer as kAutoShortlist / kAutoPrefilter (the same -1). `Items`
// is one integer, or a vector of them (a comma-separated list, each checked).
template <typename Items>
CLI::Option* add_items_option(CLI::App* sub, const std::string& name, Items& items, const std::string& description) {
  static_assert(::imram::kAutoShortlist == ::imram::kAutoPrefilter);
  return sub->add_option(name, items, description)
      ->default_str("auto")
      ->transform(CLI::Validator(
          [](std::string& value) {
            if (value == "auto") {
              value = std::to_string(::imram::kAutoShortlist);
              return std::string();
            }
            return at_least(0, "")(value);
          },
          "NUMBER >= 0 or auto"));
}

// --shortlist: the items all K steps score (imram::auto_shortlist).
template <typename Items>
CLI::Option* add_shortlist_option(CLI::App* sub, Items& shortlist, const std::string& description) {
  return add_items_option(sub, "--shortlist", shortlist,
                          description +
                              " (auto: one item in 300 of the gallery, 100 to 1,000, and at most what all K "
                              "steps read in 80 images of 36 regions at d = 1,024)");
}

// --prefilter: the items step 1 scores (imram::auto_prefilter).
template <typename Items>
CLI::Option* add_prefilter_option(CLI::App* sub, Items& prefilter, const std::string& description) {
  return add_items_option(sub, "--prefilter", prefilter,
                          description +
                              " (0 or at most --shortlist: no middle stage; auto: half the gallery, "
                              "1,000 to 20,000, and at most 8,000 images' worth of 36 regions at d = 1,024)");
}

// --step1: the items exact step 1 scores after the coded first step (imram::auto_step1).
template <typename Items>
CLI::Option* add_step1_option(CLI::App* sub, Items& step1) {
  return add_items_option(sub, "--step1", step1,
                          "where the index keeps codes, step 1 from the codes ranks the --prefilter list and keeps "
                          "this many for exact step 1 (0: no coded step; auto: what exact step 1 reads in 400 "
                          "images of 36 regions at d = 1,024, at least 4 x --shortlist)");
}

// For long-running commands (serve): freed memory returns to the system after about `seconds`
// unused (< 0: never, the setting that suits training and evaluation; cli/allocator.cpp).
void return_freed_memory_after(double seconds);

struct GlobalOptions {
  int threads = 0;             // 0: all cores
  std::string device = "cpu";  // cpu | cuda | cuda:N
};

struct Invocation {
  GlobalOptions globals;
  std::function<int()> run;  // set by the chosen subcommand's callback
  // A moment's work: not worth starting the program again for imram's OpenMP waiting default
  // (runtime/openmp_waiting.h), which costs a second start-up of LibTorch (~0.4 s here).
  bool brief = false;
};

// One function per subcommand, defined in its cli/<name>.cpp, adding it (its options and what
// it runs) to the command line; kCommands lists them all, in --help's order.
void add_bench_command(CLI::App& root, Invocation& invocation);
void add_doctor_command(CLI::App& root, Invocation& invocation);
void add_eval_command(CLI::App& root, Invocation& invocation);
void add_explain_command(CLI::App& root, Invocation& invocation);
void add_features_command(CLI::App& root, Invocation& invocation);
void add_import_command(CLI::App& root, Invocation& invocation);
void add_export_command(CLI::App& root, Invocation& invocation);
void add_index_command(CLI::App& root, Invocation& invocation);
void add_metrics_command(CLI::App& root, Invocation& invocation);
void add_score_command(CLI::App& root, Invocation& invocation);
void add_search_command(CLI::App& root, Invocation& invocation);
void add_serve_command(CLI::App& root, Invocation& invocation);
void add_synth_command(CLI::App& root, Invocation& invocation);
void add_tokenize_command(CLI::App& root, Invocation& invocation);
void add_train_command(CLI::App& root, Invocation& invocation);
void add_train_global_command(CLI::App& root, Invocation& invocation);
void add_vocab_command(CLI::App& root, Invocation& invocation);

using CommandSetup = void (*)(CLI::App& root, Invocation& invocation);
inline constexpr CommandSetup kCommands[] = {
    add_bench_command,        add_doctor_command, add_eval_command,  add_explain_command,  add_features_command,
    add_import_command,       add_export_command, add_index_command, add_metrics_command,  add_score_command,
    add_search_command,       add_serve_command,  add_synth_command, add_tokenize_command, add_train_command,
    add_train_global_command, add_vocab_command,
};

}  // namespace imram::cli
