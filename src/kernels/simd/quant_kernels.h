// The Q8 / Q4 matrix kernel for AVX-512 (simd/quant_avx512.cpp), called by
// kernels/quant_matmul.cpp with the activations already quantized per token.
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
  int64_t n_tokens = 0;
  float* out = nullptr;  // [n_tokens][w->rows]
  // Rows per panel: all tokens pass over one panel (kept in L2) before the next.
  int64_t panel_rows = 0;
};

// Rows [row_begin, row_end) of out, all tokens. Requires AVX-512 F/BW/VL.
void avx512_quant_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end);

}  // namespace dsv3::kernels::simd
