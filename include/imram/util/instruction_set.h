#pragma once
// The vector instruction set imram's hand-written kernels run with (the engine's, engine/simd.h,
// and the memory unit's product, model/memory.h): the best the CPU has, unless the environment
// variable IMRAM_SIMD names a narrower one, so that one machine can test what another runs.
#include <string>

// GCC on x86-64 compiles each kernel for several instruction sets and picks one at run time.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define IMRAM_X86_DISPATCH 1
#endif

namespace imram::simd {

enum class InstructionSet { Avx512f, Avx2, Sse2, Generic };

// Read once; an IMRAM_SIMD the CPU lacks, or an unknown one, is an error.
InstructionSet instruction_set();
std::string to_string(InstructionSet set);

}  // namespace imram::simd
