// The one reduction tree of the AVX-512 kernels: a vector's 16 float lanes are added as
// (lo 256 + hi 256), then the halves again, down to one lane, i.e. lane i + lane i+8, then +4,
// +2, +1. Batch invariance needs every kernel that finishes a dot product to use this same
// tree, so it is written once. Include, as the other *_impl.h, after a target pragma that
// enables AVX-512F (it compiles into that file's anonymous namespace).
#pragma once

namespace dsv3::kernels::simd {
namespace {

inline float reduce_add_avx512(__m512 v) {
  __m256 sum8 = _mm256_add_ps(_mm512_castps512_ps256(v),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(sum8), _mm256_extractf128_ps(sum8, 1));
  __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  __m128 sum1 = _mm_add_ss(sum2, _mm_movehdup_ps(sum2));
  return _mm_cvtss_f32(sum1);
}

// reduce_add_avx512 of four vectors at once, the same tree for each (lane i + lane i+8, then +4,
// +2, +1; addition commutes, so the pairing below gives bitwise the same sums): lane j of the
// result is reduce_add_avx512 of the j-th vector. About a third of the instructions of four
// such calls, which matters for short rows (256 to 1024 columns: 8 to 32 vdpbf16ps per
// output).
inline __m128 reduce_add4_avx512(__m512 a, __m512 b, __m512 c, __m512 d) {
  // [a_lo256 + a_hi256 | b_lo256 + b_hi256], the same for c, d.
  const __m512 ab =
      _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  const __m512 cd =
      _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
  // 128-bit blocks [a4 | b4 | c4 | d4]: the low block plus the high block of each half.
  const __m512 abcd =
      _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
  // Within each block: lanes (0 + 2, 1 + 3), then (0 + 1).
  const __m512 pairs = _mm512_add_ps(abcd, _mm512_permute_ps(abcd, 0x4e));
  const __m512 sums = _mm512_add_ps(pairs, _mm512_permute_ps(pairs, 0xb1));
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(
      _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), sums));
}

// One float16 value (a block-quantized weight scale) broadcast to 16 floats.
inline __m512 broadcast_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_set1_epi16(short(*p)));
}

}  // namespace
}  // namespace dsv3::kernels::simd
