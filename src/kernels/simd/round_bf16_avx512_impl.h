// f32_to_bf16 (tensor/dtype.h) on 16 floats at once, shared by the AVX-512 files that round
// activations to bf16. Include, as the other *_impl.h, after a target pragma that enables
// AVX-512F and BW (it compiles into that file's anonymous namespace).
#pragma once

namespace dsv3::kernels::simd {
namespace {

// Round to nearest even on the bits, NaNs quieted: bitwise the scalar function
// (vcvtneps2bf16 would flush subnormals instead).
inline __m256i round_to_bf16(__m512 x) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(
      _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __m512i quiet_nan = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
  const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, is_nan, quiet_nan));
}

}  // namespace
}  // namespace dsv3::kernels::simd
