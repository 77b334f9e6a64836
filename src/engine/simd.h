#pragma once
// What the engine's hand-written kernels (fused_gate.cpp, fragment_products.cpp) share: sixteen
// floats as one value, and the choice of the instruction set they are compiled for.
//
// Each kernel is one inline body compiled three times on x86-64 (AVX-512F, AVX2, SSE2) and the
// best the CPU has runs, unless IMRAM_SIMD names a narrower one (so that one machine can test
// what another runs). The files of these kernels are compiled with -ffp-contract=off (GCC would
// otherwise fuse multiplies and adds into FMAs where the target has them, AVX-512 here), so
// every lane does the same IEEE operations and every instruction set computes the same bits.
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "imram/util/instruction_set.h"

#ifdef IMRAM_X86_DISPATCH
#include <immintrin.h>
#endif

#define IMRAM_INLINE inline __attribute__((always_inline))

// Floats16 passes by value only between inlined helpers, so the ABI note about AVX-512 vector
// arguments does not concern any call that exists in the binary.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace imram::simd {

// Sixteen floats in one value: GCC's vector extension, lowered to one AVX-512 register, two AVX2
// registers or four SSE registers by the instruction set of the function it is inlined into.
typedef float Floats16 __attribute__((vector_size(64)));
typedef std::int32_t Ints16 __attribute__((vector_size(64)));
typedef std::uint16_t Halves16 __attribute__((vector_size(32)));

IMRAM_INLINE Floats16 load16(const float* p) {
  Floats16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

IMRAM_INLINE void store16(float* p, Floats16 v) { std::memcpy(p, &v, sizeof v); }

// IEEE half to float, exactly, without arithmetic on subnormal floats (x86 takes a microcode
// assist for each vector that holds one): normal halves by moving their bits and rebasing the
// exponent, subnormal ones as their integer mantissa times 2^-24 (a normal float product, exact),
// infinities and NaNs with the float's all-ones exponent.
IMRAM_INLINE float half_to_float(std::uint16_t h) {
  const std::uint32_t magnitude = h & 0x7fffu, sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exponent = magnitude >> 10;
  std::uint32_t bits;
  if (exponent == 0) {
    const float subnormal = float(magnitude) * 0x1p-24f;
    std::memcpy(&bits, &subnormal, sizeof bits);
  } else {
    bits = exponent == 31 ? ((magnitude << 13) | 0x7f800000u) : ((magnitude << 13) + (112u << 23));
  }
  bits |= sign;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

IMRAM_INLINE Floats16 load16(const std::uint16_t* p) {
  Halves16 h;
  std::memcpy(&h, p, sizeof h);
  const Ints16 wide = __builtin_convertvector(h, Ints16);
  const Ints16 magnitude = wide & 0x7fff, sign = (wide & 0x8000) << 16, exponent = magnitude >> 10;
  const Floats16 subnormal = __builtin_convertvector(magnitude, Floats16) * 0x1p-24f;
  Ints16 subnormal_bits;
  std::memcpy(&subnormal_bits, &subnormal, sizeof subnormal_bits);
  Ints16 bits = exponent == 31 ? ((magnitude << 13) | 0x7f800000) : ((magnitude << 13) + (112 << 23));
  bits = exponent == 0 ? subnormal_bits : bits;
  bits |= sign;
  Floats16 value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

#ifdef IMRAM_X86_DISPATCH
// AVX-512F's own conversion (vcvtph2ps): the same values in one instruction. Not forced inline:
// GCC refuses that through the plain inline templates between it and the AVX-512 kernel, and
// inlines it once they are inlined into the kernel.
__attribute__((target("avx512f"))) inline Floats16 load16_avx512(const std::uint16_t* p) {
  __m256i h;
  std::memcpy(&h, p, sizeof h);
  // The zero-masked form: the plain one starts from an "undefined" register that GCC's
  // -Wmaybe-uninitialized reports wherever it is inlined.
  const __m512 wide = _mm512_maskz_cvtph_ps(0xffff, h);
  Floats16 value;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}
#endif

// e^x within 2 ulp for |x| <= 88, clamped beyond (Cephes' expf: x = n ln2 + r, a degree-6
// polynomial in r, 2^n through the exponent bits). Plain arithmetic without branches or calls,
// for scalars and Floats16 alike; every instruction set computes the same bits.
template <typename Value, typename Integer>
IMRAM_INLINE Value exp_approx(Value x) {
  x = x < -88.0f ? Value{} - 88.0f : x;
  x = x > 88.0f ? Value{} + 88.0f : x;
  // Adding and removing 1.5 * 2^23 rounds to the nearest integer (|x log2 e| < 2^22 here).
  const Value n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const Value r = x - n * 0.693359375f + n * 2.12194440e-4f;
  Value p = Value{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // A NaN input must not reach the integer conversion (undefined, and INT_MIN on x86, whose
  // shift is undefined too); p is NaN already, so any finite exponent keeps the result NaN.
  const Value finite_n = n == n ? n : Value{};
  Integer bits;
  if constexpr (std::is_same_v<Value, float>) {
    bits = (static_cast<std::int32_t>(finite_n) + 127) << 23;
  } else {
    bits = (__builtin_convertvector(finite_n, Integer) + 127) << 23;
  }
  Value scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

IMRAM_INLINE float load1(const float* p) { return *p; }
IMRAM_INLINE float load1(const std::uint16_t* p) { return half_to_float(*p); }

// Runs `kernel.run<Avx512>()` compiled for the instruction set chosen above: a kernel is a struct
// whose IMRAM_INLINE member template `run<bool Avx512>()` holds the body, and `Avx512` tells it
// that AVX-512-only instructions (load16_avx512) may be used.
#ifdef IMRAM_X86_DISPATCH
template <typename Kernel>
__attribute__((target("avx512f"))) void run_avx512(const Kernel& kernel) {
  kernel.template run<true>();
}
template <typename Kernel>
__attribute__((target("avx2"))) void run_avx2(const Kernel& kernel) {
  kernel.template run<false>();
}
#endif
template <typename Kernel>
void run_plain(const Kernel& kernel) {
  kernel.template run<false>();
}

template <typename Kernel>
void run(const Kernel& kernel) {
  switch (instruction_set()) {
#ifdef IMRAM_X86_DISPATCH
    case InstructionSet::Avx512f:
      return run_avx512(kernel);
    case InstructionSet::Avx2:
      return run_avx2(kernel);
#endif
    default:
      return run_plain(kernel);
  }
}

}  // namespace imram::simd
