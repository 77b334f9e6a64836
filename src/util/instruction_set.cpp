#include "imram/util/instruction_set.h"

#include <cstdlib>

#include "imram/error.h"

namespace imram::simd {

namespace {

InstructionSet choose() {
#ifdef IMRAM_X86_DISPATCH
  const InstructionSet sets[] = {InstructionSet::Avx512f, InstructionSet::Avx2, InstructionSet::Sse2};
  const auto supported = [](InstructionSet set) {
    __builtin_cpu_init();
    if (set == InstructionSet::Avx512f) return bool(__builtin_cpu_supports("avx512f"));
    if (set == InstructionSet::Avx2) return bool(__builtin_cpu_supports("avx2"));
    return true;
  };
  const char* requested = std::getenv("IMRAM_SIMD");
  for (const auto set : sets) {
    if (requested && *requested) {
      if (std::string(requested) != to_string(set)) continue;
      if (!supported(set))
        throw Error(std::string("IMRAM_SIMD=") + requested + ": this CPU does not have " + requested);
      return set;
    }
    if (supported(set)) return set;
  }
  throw Error(std::string("IMRAM_SIMD=") + requested + ": unknown instruction set (avx512f, avx2 or sse2)");
#else
  return InstructionSet::Generic;
#endif
}

}  // namespace

InstructionSet instruction_set() {
  static const InstructionSet chosen = choose();
  return chosen;
}

std::string to_string(InstructionSet set) {
  switch (set) {
    case InstructionSet::Avx512f:
      return "avx512f";
    case InstructionSet::Avx2:
      return "avx2";
    case InstructionSet::Sse2:
      return "sse2";
    case InstructionSet::Generic:
      return "generic";
  }
  return "generic";
}

}  // namespace imram::simd
