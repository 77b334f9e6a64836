#pragma once
// The memory distillation unit's gated update (model/memory.h) as one vectorised pass over
// memory, the inner kernel of the engine's FusedCpu path (engine/matching.h): LibTorch would
// make a pass each for the sum, tanh, sigmoid, the gated mix and the re-normalisation.
#include <torch/types.h>

#include <string>

namespace imram {

// For each row r of `preactivation` (rows x 2d, contiguous float32): [o_pre ; g_pre] =
// preactivation[r] + addend (a (rows x 2d) tensor, or a (2d) bias shared by every row),
// o = tanh(o_pre), g = sigmoid(g_pre), out[r] = g previous[r] + (1 - g) o, then, with
// `normalize`, out[r] / (|out[r]| + 1e-8) as l2norm() does. `out` may alias `previous`.
void fused_gated_update(const torch::Tensor& preactivation, const torch::Tensor& addend, const torch::Tensor& previous,
                        torch::Tensor& out, bool normalize);

// The instruction set of the kernel that runs: "avx512f", "avx2" or "sse2" (x86-64), the best
// the CPU has unless the environment variable IMRAM_SIMD names a narrower one (so that one
// machine can test what another runs); "generic" elsewhere. An IMRAM_SIMD the CPU lacks, or
// an unknown one, is an error.
std::string fused_gate_instruction_set();

}  // namespace imram
