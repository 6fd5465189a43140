// Matrix products of activations (float32, row-major) with weight matrices in their stored
// format. Every fast path has the scalar reference beside it.
//
// Batch invariance (a hard requirement of the engine: a sequence's output is bitwise the same
// alone or inside any batch): out[t] depends only on x[t] and w, never on n_tokens, on the other
// rows of x or on the number of threads. Each output is one dot product in one fixed order per
// instruction set (see simd/matmul_impl.h), whichever loop form computes it.
#pragma once

#include <cstdint>
#include <span>

#include "tensor/weight_matrix.h"

namespace dsv3::kernels {

// out[t][r] = sum_c x[t][c] * W[r][c]   for t < n_tokens, r < w.rows.
// x is [n_tokens][w.cols], out is [n_tokens][w.rows]. Results differ between instruction sets
// (DSV3_KERNELS) within float rounding, never between batch sizes.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out);

// One product of a group: out = matmul(*w, x, n_tokens).
struct MatmulItem {
  const WeightMatrix* w = nullptr;
  const float* x = nullptr;  // [n_tokens][w->cols]
  int64_t n_tokens = 0;
  float* out = nullptr;  // [n_tokens][w->rows]
};

// Several independent products at once (the gate and up projections of every selected expert,
// the key absorption of every head, ...): the rows of all the few-token products are split over
// the threads in one parallel_for, so a decode step pays one synchronisation per group instead
// of one per matrix. Each out is bitwise what matmul(*item.w, item.x, item.n_tokens, item.out)
// gives: the same form per (weight, n_tokens) is chosen for both. Outputs must not overlap
// each other or any input.
void matmul_group(std::span<const MatmulItem> items);

// matmul with the activations rounded to bf16 (round to nearest even) and multiplied with
// vdpbf16ps, accumulating in float: about twice the arithmetic rate of matmul for prefill, at
// bf16 precision of x (relative error ~2^-9 per product). Opt-in; used only for BF16 weights on
// CPUs with AVX512_BF16 (and the avx512 kernel set active); otherwise it is exactly matmul.
// Batch invariant like matmul (a token's row is bitwise the same whatever n_tokens), and
// independent of the number of threads.
void matmul_bf16_activations(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out);
// Whether matmul_bf16_activations(w, ...) takes the bf16 path on this CPU (for any n_tokens).
bool bf16_activations_supported(const WeightMatrix& w);

// The scalar reference of matmul (double accumulation).
void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out);

// Row `row` of W as float32 (embedding lookup): out is [w.cols].
void dequantize_row(const WeightMatrix& w, int64_t row, float* out);

}  // namespace dsv3::kernels
