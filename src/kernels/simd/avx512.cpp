// The kernels compiled for AVX-512 (F, BW, VL) with FMA and F16C; run only when
// isa_supported(KernelIsa::kAvx512). Every header is included before the target pragma so no
// inline function outside this file is compiled for AVX-512.

// GCC 12's AVX-512 headers build "undefined" vectors by self-initialisation, which
// -Wuninitialized reports wherever such an intrinsic is inlined (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "kernels/head_matvec.h"
#include "kernels/simd/isa_kernels.h"
#include "tensor/row_blocks.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")

#include "kernels/simd/reduce_avx512_impl.h"
#include "kernels/simd/matmul_impl.h"
#include "kernels/simd/ops_impl.h"
#include "kernels/simd/head_matvec_impl.h"
#include "kernels/simd/attention_impl.h"

namespace dsv3::kernels::simd {
namespace {

struct Avx512 {
  using F = __m512;
  static constexpr int kLanes = 16;
  // Panel-form register tile: 4 rows x 6 tokens = 24 accumulators of 32 registers, plus the
  // 4 weight vectors and a token vector.
  static constexpr int kDotRows = 4;
  static constexpr int kDotTokens = 6;

  static __mmask16 first(int count) { return __mmask16((1u << count) - 1u); }

  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float value) { return _mm512_set1_ps(value); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_partial(const float* p, int count) {
    return _mm512_maskz_loadu_ps(first(count), p);
  }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store_partial(float* p, F v, int count) { _mm512_mask_storeu_ps(p, first(count), v); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F round(F v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT); }
  static F zero_where_less(F value, F a, F b) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, b, _CMP_NLT_UQ), value);
  }
  static F exp2_int(F n) { return _mm512_scalef_ps(_mm512_set1_ps(1.0f), n); }
  static float reduce_add(F v) { return reduce_add_avx512(v); }
  static void reduce_add4(F a, F b, F c, F d, float* out) {
    _mm_storeu_ps(out, reduce_add4_avx512(a, b, c, d));
  }
  static float reduce_max(F v) { return _mm512_reduce_max_ps(v); }
  // The first lane where a == b, or -1.
  static int first_equal(F a, F b) {
    const unsigned mask = _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ);
    return mask == 0 ? -1 : __builtin_ctz(mask);
  }
  // (v1, v0, v3, v2, ...): each pair of lanes swapped.
  static F swap_pairs(F v) { return _mm512_permute_ps(v, 0xb1); }
  // (p[0], p[0], p[1], p[1], ..., p[7], p[7]).
  static F load_duplicated(const float* p) {
    const __m512i twice = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    return _mm512_permutexvar_ps(twice, _mm512_castps256_ps512(_mm256_loadu_ps(p)));
  }

  // 16 words (two bf16 each) from p: their low and high halves as floats.
  static void bf16_pair_words(const uint16_t* p, F& low, F& high) {
    const __m512i words = _mm512_loadu_si512(p);
    low = _mm512_castsi512_ps(_mm512_slli_epi32(words, 16));
    high = _mm512_castsi512_ps(_mm512_and_si512(words, _mm512_set1_epi32(int32_t(0xffff0000u))));
  }
  static F from_bf16(__m256i bits) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
  }
  static F load_bf16(const uint16_t* p) {
    return from_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load_bf16_partial(const uint16_t* p, int count) {
    return from_bf16(_mm256_maskz_loadu_epi16(first(count), p));
  }
  static F load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load_f16_partial(const uint16_t* p, int count) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first(count), p));
  }
  // fp8 e4m3 bits s.eeee.mmm -> float bits s.000eeee.mmm000...: the value times 2^-120, exact
  // for normals and subnormals alike. Sign extension puts s in bit 31 after the shift.
  static F from_fp8(__m128i bytes) {
    const __m512i shifted = _mm512_slli_epi32(_mm512_cvtepi8_epi32(bytes), 20);
    return _mm512_castsi512_ps(_mm512_and_si512(shifted, _mm512_set1_epi32(int32_t(0x87f00000u))));
  }
  static F load_fp8(const uint8_t* p) {
    return from_fp8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_fp8_partial(const uint8_t* p, int count) {
    return from_fp8(_mm_maskz_loadu_epi8(first(count), p));
  }
};

// Constant-initialised here, inside the target region, so no AVX-512 code runs to build it.
constexpr IsaKernels kAvx512Kernels{
    .lanes = Avx512::kLanes,
    .dot_rows = Avx512::kDotRows,
    .matvec_rows = &matvec_rows<Avx512>,
    .gemm_rows = &gemm_rows<Avx512>,
    .rms_norm = &rms_norm<Avx512>,
    .silu_mul = &silu_mul<Avx512>,
    .sigmoid = &sigmoid<Avx512>,
    .softmax = &softmax<Avx512>,
    .softmax_numerators = &softmax_numerators<Avx512>,
    .argmax = &argmax<Avx512>,
    .head_matvec = &head_matvec<Avx512>,
    .dot = &dot<Avx512>,
    .axpy = &axpy<Avx512>,
    .weighted_row_sum = &weighted_row_sum<Avx512>,
    .rotate_pairs = &rotate_pairs<Avx512>,
    .attention_scores = &attention_scores<Avx512, float>,
    .attention_weighted_sum = &attention_weighted_sum<Avx512, float>,
    .attention_scores_bf16_keys = &attention_scores<Avx512, uint16_t>,
    .attention_weighted_sum_bf16_values = &attention_weighted_sum<Avx512, uint16_t>,
};

}  // namespace
}  // namespace dsv3::kernels::simd

#pragma GCC pop_options

namespace dsv3::kernels::simd {
const IsaKernels& avx512_kernels() { return kAvx512Kernels; }
}  // namespace dsv3::kernels::simd
