// The kernels compiled for AVX2 with FMA and F16C; run only when
// isa_supported(KernelIsa::kAvx2). Every header is included before the target pragma so no
// inline function outside this file is compiled for AVX2.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/head_matvec.h"
#include "kernels/simd/isa_kernels.h"
#include "tensor/row_blocks.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

#include "kernels/simd/matmul_impl.h"
#include "kernels/simd/ops_impl.h"
#include "kernels/simd/head_matvec_impl.h"
#include "kernels/simd/attention_impl.h"

namespace dsv3::kernels::simd {
namespace {

struct Avx2 {
  using F = __m256;
  static constexpr int kLanes = 8;
  // Panel-form register tile: 3 rows x 4 tokens = 12 accumulators of 16 registers, plus the
  // 3 weight vectors and a token vector.
  static constexpr int kDotRows = 3;
  static constexpr int kDotTokens = 4;

  // AVX2 has no byte/word masked loads: partial vectors go through a zeroed local copy.
  template <class T, int kCount = kLanes>
  static void copy_first(T (&padded)[kCount], const T* p, int count) {
    std::memset(padded, 0, sizeof(padded));
    std::memcpy(padded, p, size_t(count) * sizeof(T));
  }

  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float value) { return _mm256_set1_ps(value); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load_partial(const float* p, int count) {
    float padded[kLanes];
    copy_first(padded, p, count);
    return load(padded);
  }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store_partial(float* p, F v, int count) {
    float lanes[kLanes];
    _mm256_storeu_ps(lanes, v);
    std::memcpy(p, lanes, size_t(count) * sizeof(float));
  }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  // (v1, v0, v3, v2, ...): each pair of lanes swapped.
  static F swap_pairs(F v) { return _mm256_permute_ps(v, 0xb1); }
  // (p[0], p[0], p[1], p[1], p[2], p[2], p[3], p[3]).
  static F load_duplicated(const float* p) {
    const __m256i twice = _mm256_set_epi32(3, 3, 2, 2, 1, 1, 0, 0);
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), twice);
  }
  static F round(F v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F zero_where_less(F value, F a, F b) {
    return _mm256_and_ps(value, _mm256_cmp_ps(a, b, _CMP_NLT_UQ));
  }
  static F exp2_int(F n) {
    const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23));
  }
  static float reduce_add(F v) {
    __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
    __m128 sum1 = _mm_add_ss(sum2, _mm_movehdup_ps(sum2));
    return _mm_cvtss_f32(sum1);
  }
  static void reduce_add4(F a, F b, F c, F d, float* out) {
    out[0] = reduce_add(a);
    out[1] = reduce_add(b);
    out[2] = reduce_add(c);
    out[3] = reduce_add(d);
  }
  // The first lane where a == b, or -1.
  static int first_equal(F a, F b) {
    const unsigned mask = unsigned(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ)));
    return mask == 0 ? -1 : __builtin_ctz(mask);
  }
  static float reduce_max(F v) {
    __m128 max4 = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 max2 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
    __m128 max1 = _mm_max_ss(max2, _mm_movehdup_ps(max2));
    return _mm_cvtss_f32(max1);
  }

  // 8 words (two bf16 each) from p: their low and high halves as floats.
  static void bf16_pair_words(const uint16_t* p, F& low, F& high) {
    const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    low = _mm256_castsi256_ps(_mm256_slli_epi32(words, 16));
    high = _mm256_castsi256_ps(_mm256_and_si256(words, _mm256_set1_epi32(int32_t(0xffff0000u))));
  }
  static F from_bf16(__m128i bits) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
  }
  static F load_bf16(const uint16_t* p) {
    return from_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_bf16_partial(const uint16_t* p, int count) {
    uint16_t padded[kLanes];
    copy_first(padded, p, count);
    return load_bf16(padded);
  }
  static F load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_f16_partial(const uint16_t* p, int count) {
    uint16_t padded[kLanes];
    copy_first(padded, p, count);
    return load_f16(padded);
  }
  // See Avx512::from_fp8: the fp8 value times 2^-120.
  static F from_fp8(__m128i bytes) {
    const __m256i shifted = _mm256_slli_epi32(_mm256_cvtepi8_epi32(bytes), 20);
    return _mm256_castsi256_ps(_mm256_and_si256(shifted, _mm256_set1_epi32(int32_t(0x87f00000u))));
  }
  static F load_fp8(const uint8_t* p) {
    return from_fp8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_fp8_partial(const uint8_t* p, int count) {
    uint8_t padded[kLanes];
    copy_first(padded, p, count);
    return load_fp8(padded);
  }
};

// Constant-initialised here, inside the target region, so no AVX2 code runs to build it.
constexpr IsaKernels kAvx2Kernels{
    .lanes = Avx2::kLanes,
    .dot_rows = Avx2::kDotRows,
    .matvec_rows = &matvec_rows<Avx2>,
    .gemm_rows = &gemm_rows<Avx2>,
    .rms_norm = &rms_norm<Avx2>,
    .silu_mul = &silu_mul<Avx2>,
    .sigmoid = &sigmoid<Avx2>,
    .softmax = &softmax<Avx2>,
    .softmax_numerators = &softmax_numerators<Avx2>,
    .argmax = &argmax<Avx2>,
    .head_matvec = &head_matvec<Avx2>,
    .dot = &dot<Avx2>,
    .axpy = &axpy<Avx2>,
    .weighted_row_sum = &weighted_row_sum<Avx2>,
    .rotate_pairs = &rotate_pairs<Avx2>,
    .attention_scores = &attention_scores<Avx2, float>,
    .attention_weighted_sum = &attention_weighted_sum<Avx2, float>,
    .attention_scores_bf16_keys = &attention_scores<Avx2, uint16_t>,
    .attention_weighted_sum_bf16_values = &attention_weighted_sum<Avx2, uint16_t>,
};

}  // namespace
}  // namespace dsv3::kernels::simd

#pragma GCC pop_options

namespace dsv3::kernels::simd {
const IsaKernels& avx2_kernels() { return kAvx2Kernels; }
}  // namespace dsv3::kernels::simd
