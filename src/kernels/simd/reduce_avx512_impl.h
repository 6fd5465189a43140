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

// One float16 value (a block-quantized weight scale) broadcast to 16 floats.
inline __m512 broadcast_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_set1_epi16(short(*p)));
}

}  // namespace
}  // namespace dsv3::kernels::simd
