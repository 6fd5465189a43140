// The Q8 / Q4 matrix kernel for AVX-512 (simd/quant_avx512.cpp), called by
// kernels/quant_matmul.cpp with the activations already quantized per token, and the
// quantization of those activations (simd/quant_activations_avx512.cpp); a Q8 / Q4 matrix applied
// transposed (simd/quant_transposed_avx512.cpp).
#pragma once

#include <cstdint>

#include "tensor/weight_matrix.h"

namespace dsv3::kernels::simd {

struct QuantMatmulJob {
  const WeightMatrix* w = nullptr;
  // Token t's int16 codes at x_codes + t * x_stride (x_stride a multiple of 128, zero past
  // cols) and its scales per group of 32 columns at x_scales + t * x_groups.
  const int16_t* x_codes = nullptr;
  int64_t x_stride = 0;
  const float* x_scales = nullptr;
  int64_t x_groups = 0;
  // The VNNI kernels only (avx512_vnni_q4_rows, avx512_vnni_q8_rows): the int8 codes (see
  // activation_code_max) as bytes ([n_tokens][x_stride]) and per token and step s of 64 columns
  // ([n_tokens][x_stride / 64][16]): 16 floats, lanes 0-7 the scale of group 2s and lanes 8-15
  // that of group 2s+1; 16 int32, lanes 0 and 8 holding -offset * (sum of the group's codes)
  // and the others 0 (the weights enter vpdpbusd unsigned, Q4 nibbles as q + 8, Q8 codes with
  // their sign bit flipped as q + 128, and this start value takes the offset back).
  const int8_t* x_bytes = nullptr;
  const float* x_lane_scales = nullptr;
  const int32_t* x_lane_offsets = nullptr;
  int64_t n_tokens = 0;
  float* out = nullptr;  // [n_tokens][w->rows]
  // Rows per panel: all tokens pass over one panel (kept in L2) before the next.
  int64_t panel_rows = 0;
};

// Bitwise what quantize_activations (tensor/block_quant.h) writes. Requires AVX-512 F/BW/VL.
void avx512_quantize_activations(const float* x, int64_t cols, int code_max, int16_t* codes,
                                 float* scales);
// Bitwise what arrange_byte_activations (kernels/quant_matmul.h) writes: the VNNI layout above
// of one token's int8 codes (`stride` of them, a multiple of 128) and scales, for weights made
// unsigned by adding weight_offset. Requires AVX-512 F/BW/VL.
void avx512_arrange_byte_activations(const int16_t* codes, const float* scales, int64_t stride,
                                     int weight_offset, int8_t* bytes, float* lane_scales,
                                     int32_t* lane_offsets);

// Columns per block of avx512_quant_transposed_columns: one packed Q4 chunk.
inline constexpr int64_t kTransposedBlockCols = 128;
// Columns [col_begin, col_end) of out[t][c] = sum_r x[t][r] * W[r][c] for a Q8/Q4 w (see
// kernels/matmul_transposed.h), every token; col_begin a multiple of kTransposedBlockCols and
// col_end at most kTransposedBlockCols further. Requires AVX-512 F/BW/VL.
void avx512_quant_transposed_columns(const WeightMatrix& w, const float* x, int64_t n_tokens,
                                     float* out, int64_t col_begin, int64_t col_end);

// Q8 rows [row_begin, row_end) of out, all tokens (vpmaddwd of int16 codes). Requires AVX-512
// F/BW/VL.
void avx512_quant_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end);
// Q8 rows with int8 activation codes (vpdpbusd of the sign-flipped weights and the codes).
// Requires AVX-512 F/BW/VL and VNNI.
void avx512_vnni_q8_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end);
// Q4 rows (vpdpbusd of the unpacked nibbles and the int8 codes). Requires AVX-512 F/BW/VL and VNNI.
void avx512_vnni_q4_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end);

}  // namespace dsv3::kernels::simd
