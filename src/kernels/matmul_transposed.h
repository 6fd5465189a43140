// Products with a weight matrix applied transposed, read from its own rows in place:
//   out[t][c] = sum_r x[t][r] * W[r][c]   for t < n_tokens, c < w.cols.
// MLA's key absorption (W_UK^T q_nope, DeepSeek-V2 paper 2.1.2) on a Q8/Q4 kv_b_proj: the rows
// of W_UK are read as stored (a quarter or an eighth of the bytes of a float copy of W_UK^T,
// and that per decoded token).
//
// Each weight is dequantized exactly (integer code times its float16 scale: exact in float) and
// the sum runs in float over r in order, one fused multiply-add per row on the AVX-512 path:
// out[t] depends only on x[t] and w (batch invariant), never on the threads.
#pragma once

#include <cstdint>
#include <span>

#include "tensor/weight_matrix.h"

namespace dsv3::kernels {

struct TransposedMatmulItem {
  const WeightMatrix* w = nullptr;
  const float* x = nullptr;  // [n_tokens][w->rows]
  int64_t n_tokens = 0;
  float* out = nullptr;  // [n_tokens][w->cols]
};

// Every item's out, all in one pass of the pool. Q8/Q4 weights have fast kernels; any other
// format is read element by element (WeightMatrix::at). Outputs must not overlap each other or
// any input.
void matmul_transposed_group(std::span<const TransposedMatmulItem> items);

// The scalar reference (double accumulation over WeightMatrix::at).
void matmul_transposed_reference(const WeightMatrix& w, const float* x, int64_t n_tokens,
                                 float* out);

}  // namespace dsv3::kernels
