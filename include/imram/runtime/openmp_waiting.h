#pragma once
// How long idle OpenMP threads spin before they sleep. libgomp's default (300,000 spins, about
// 3 ms) takes the cores from any other busy process on the machine, and libgomp reads its
// settings once, in its own constructor, before any code of ours runs.
#include <string>
#include <vector>

namespace imram {

// The spin count imram chooses when the user chose nothing (docs/performance.md measures it).
inline constexpr const char* kDefaultGompSpinCount = "10000";

// When neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, sets GOMP_SPINCOUNT to the default and
// executes this program again with the same arguments, so that libgomp reads it; the user's own
// setting always wins. Returns only when nothing was executed (a setting was there, or the
// program could not be executed again: it then runs with libgomp's default).
void reexec_with_default_openmp_waiting(char** argv);

// The settings this process runs with, as "NAME=value" (empty: libgomp's defaults).
std::vector<std::string> openmp_waiting_settings();

}  // namespace imram
