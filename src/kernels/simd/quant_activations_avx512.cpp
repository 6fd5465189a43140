// The per-token activation quantization of the Q8 / Q4 kernels (tensor/block_quant.h
// quantize_activations) and the VNNI byte layout of its codes (kernels/quant_matmul.cpp
// arrange_byte_activations), for AVX-512 (F, BW, VL). Both are run once per product before the
// pool pass, on the calling thread, so they sit on the decode's serial path: the scalar forms
// cost about as much as a small matrix.
//
// The results are bitwise those of the scalar forms, which stay the portable path and the
// reference: the same float operations on each element (|x| max per group with NaN skipped,
// one float division per group, x * inverse rounded to nearest even, NaN and out of range
// clamped as clamp_round does), only several at a time.

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/simd/quant_kernels.h"
#include "tensor/block_quant.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma")

namespace dsv3::kernels::simd {

void avx512_quantize_activations(const float* x, int64_t cols, int code_max, int16_t* codes,
                                 float* scales) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 lowest = _mm512_set1_ps(-float(code_max));
  const __m512 highest = _mm512_set1_ps(float(code_max));
  for (int64_t g = 0, begin = 0; begin < cols; ++g, begin += kQuantGroup) {
    const int64_t n = cols - begin < kQuantGroup ? cols - begin : kQuantGroup;
    const __mmask16 first_mask = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1u);
    const __mmask16 second_mask = n >= 32  ? __mmask16(0xffff)
                                  : n > 16 ? __mmask16((1u << (n - 16)) - 1u)
                                           : __mmask16(0);
    const __m512 first = _mm512_maskz_loadu_ps(first_mask, x + begin);
    const __m512 second = _mm512_maskz_loadu_ps(second_mask, x + begin + 16);
    // max(|x|, 0): vmaxps returns its second operand when either is NaN, so a NaN element is
    // skipped as std::max(largest, |x|) skips it in the scalar form.
    const __m512 largest_lanes = _mm512_max_ps(_mm512_max_ps(_mm512_abs_ps(first), zero),
                                               _mm512_max_ps(_mm512_abs_ps(second), zero));
    const float largest = _mm512_reduce_max_ps(largest_lanes);  // no NaN left: order-free
    const bool usable = largest > 0.0f && std::isfinite(largest);
    const float inverse = usable ? float(code_max) / largest : 0.0f;
    scales[g] = usable ? largest / float(code_max) : 0.0f;
    const __m512 inverse_lanes = _mm512_set1_ps(inverse);
    auto quantize = [&](__m512 values) {
      const __m512 rounded = _mm512_roundscale_ps(_mm512_mul_ps(values, inverse_lanes),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      // max(rounded, lowest) gives lowest for NaN (its second operand), as clamp_round does.
      const __m512 clamped = _mm512_min_ps(_mm512_max_ps(rounded, lowest), highest);
      return _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(clamped));
    };
    _mm256_mask_storeu_epi16(codes + begin, first_mask, quantize(first));
    _mm256_mask_storeu_epi16(codes + begin + 16, second_mask, quantize(second));
  }
}

void avx512_arrange_byte_activations(const int16_t* codes, const float* scales, int64_t stride,
                                     int weight_offset, int8_t* bytes, float* lane_scales,
                                     int32_t* lane_offsets) {
  const __m512i ones = _mm512_set1_epi16(1);
  for (int64_t g = 0; g * kQuantGroup < stride; ++g) {
    const __m512i q = _mm512_loadu_si512(codes + g * kQuantGroup);
    // |q| <= kByteActivationCodeMax: the int16 -> int8 truncation keeps every code.
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(bytes + g * kQuantGroup),
                        _mm512_cvtepi16_epi8(q));
    const int32_t sum = _mm512_reduce_add_epi32(_mm512_madd_epi16(q, ones));  // exact
    _mm256_storeu_ps(lane_scales + g * 8, _mm256_set1_ps(scales[g]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lane_offsets + g * 8),
                        _mm256_setr_epi32(-weight_offset * sum, 0, 0, 0, 0, 0, 0, 0));
  }
}

}  // namespace dsv3::kernels::simd

#pragma GCC pop_options
