// Matrix products of activations (float32, row-major) with weight matrices in their stored
// format. Every fast path has the scalar reference beside it; results do not depend on the
// number of threads (each output element is computed by one thread in a fixed order).
#pragma once

#include <cstdint>

#include "tensor/weight_matrix.h"

namespace dsv3::kernels {

// out[t][r] = sum_c x[t][c] * W[r][c]   for t < n_tokens, r < w.rows.
// x is [n_tokens][w.cols], out is [n_tokens][w.rows].
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out);

// The scalar reference of matmul (double accumulation).
void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out);

// Row `row` of W as float32 (embedding lookup): out is [w.cols].
void dequantize_row(const WeightMatrix& w, int64_t row, float* out);

}  // namespace dsv3::kernels
