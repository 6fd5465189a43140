// The exact widening of e4m3 codes to bf16, shared by the FP8 product's widening of weight
// panels (fp8_bf16_avx512.cpp) and the BF16 kernel's stream tiles reading FP8 rows in place
// (avx512_bf16.cpp). Include, as the other *_impl.h, after a target pragma that enables
// AVX-512F and BW (it compiles into that file's anonymous namespace).
#pragma once

#include <cstdint>

namespace dsv3::kernels::simd {
namespace {

// e4m3 codes m * 2^-9 (m = 0..7, the subnormals and zero) as bf16, indexed by the code's
// magnitude bits (vpermw reads the low 5).
alignas(64) constexpr uint16_t kSubnormalBf16[32] = {0x0000, 0x3B00, 0x3B80, 0x3BC0,
                                                     0x3C00, 0x3C20, 0x3C40, 0x3C60};

// 32 e4m3 codes -> their values as bf16, exactly. A normal code (exponent e = 1..15, 3
// mantissa bits) has bf16 exponent e - 7 + 127 and the mantissa bits shifted up by 4: its
// magnitude bits shifted by 4, plus 120 << 7.
inline __m512i fp8_to_bf16(__m256i codes) {
  const __m512i words = _mm512_cvtepu8_epi16(codes);
  const __m512i magnitude = _mm512_and_si512(words, _mm512_set1_epi16(0x7f));
  const __m512i normal =
      _mm512_add_epi16(_mm512_slli_epi16(magnitude, 4), _mm512_set1_epi16(int16_t(120 << 7)));
  const __mmask32 subnormal = _mm512_cmplt_epu16_mask(magnitude, _mm512_set1_epi16(8));
  const __m512i value = _mm512_mask_permutexvar_epi16(
      normal, subnormal, magnitude, _mm512_load_si512(kSubnormalBf16));
  // The sign, bit 7 of the code, to bit 15: value | (words << 8 & 0x8000).
  return _mm512_ternarylogic_epi32(value, _mm512_slli_epi16(words, 8),
                                   _mm512_set1_epi16(int16_t(0x8000)), 0xF8);
}

}  // namespace
}  // namespace dsv3::kernels::simd
