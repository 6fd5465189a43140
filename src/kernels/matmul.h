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

#include "kernels/activation_precision.h"
#include "tensor/weight_matrix.h"

namespace dsv3::kernels {

// out[t][r] = sum_c x[t][c] * W[r][c]   for t < n_tokens, r < w.rows.
// x is [n_tokens][w.cols], out is [n_tokens][w.rows]. Results differ between instruction sets
// (DSV3_KERNELS) within float rounding, never between batch sizes. For BF16 weights the
// activations are rounded to bf16 first where the activation precision says so (by default on
// CPUs with AVX512_BF16: vdpbf16ps, see activation_precision.h).
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out);

// matmul with float activations whatever the activation precision. For products whose inputs
// differ between two equivalent forms of one computation (MLA's absorbed and expanded
// attention): rounded to bf16 they would make the two forms disagree far beyond float rounding,
// and a token's result would depend on which form its batch took.
void matmul_f32_activations(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out);

// matmul_f32_activations of one token computed by the calling thread alone, bitwise the same:
// for the tiny products of a decode step's attention heads, each thread running its own heads
// without a pass of the pool per product.
void matvec_f32_activations_here(const WeightMatrix& w, const float* x, float* out);

// Rows [row_begin, row_end) of matmul(w, x, n_tokens, out), computed by the calling thread
// alone, bitwise what matmul gives them (the activations prepared as matmul's, here): for a
// pass of the caller's own that interleaves the rows of a product with other work (a decode
// step's attention, each thread computing its heads' queries and attending with them). At most
// 8 tokens; row_begin and row_end on multiples of matmul_row_step(w) (row_end may be w.rows).
// prefetch_next: the bytes the thread reads afterwards, which the weight stream runs on into.
// Not from an on_done of matmul_group (Q8/Q4 weights reuse the thread's quantized activations).
void matmul_rows_here(const WeightMatrix& w, const float* x, int64_t n_tokens, int64_t row_begin,
                      int64_t row_end, float* out, const void* prefetch_next = nullptr,
                      int64_t prefetch_next_bytes = 0);
int64_t matmul_row_step(const WeightMatrix& w);

// One product of a group: out = matmul(*w, x, n_tokens), or matmul_f32_activations when
// float_activations is set.
struct MatmulItem {
  const WeightMatrix* w = nullptr;
  const float* x = nullptr;  // [n_tokens][w->cols]
  int64_t n_tokens = 0;
  float* out = nullptr;  // [n_tokens][w->rows]
  bool float_activations = false;
  // When set, called with `context` as soon as out is complete, on the thread that completed it
  // (in a prefill group of many products, the thread that computed the whole product): the
  // caller consumes out while it is still in that core's cache (the MLPs' SwiGLU). It may use
  // the thread pool (inside a group's parallel loop its calls then run inline), not
  // matmul_group.
  void (*on_done)(const void* context) = nullptr;
  const void* context = nullptr;
  // When set, row t of the input is x + x_rows[t] * w->cols: rows picked from a larger batch
  // (the tokens routed to one expert). The BF16 kernels round them to bf16 straight from there;
  // the other paths copy them together first.
  const int64_t* x_rows = nullptr;
};

// Several independent products at once (the gate and up projections of every selected expert,
// the key absorption of every head, ...): the rows of all the few-token products are split over
// the threads in one pass of the pool, so a decode step pays one synchronisation per group
// instead of one per matrix. Each out is bitwise what matmul (or matmul_f32_activations) gives
// for the item alone: one decision (kernels/matmul_path.h) picks the kernel for both. Outputs
// must not overlap each other or any input.
void matmul_group(std::span<const MatmulItem> items);

// The scalar reference of matmul (double accumulation), with the activations rounded to bf16
// exactly when matmul rounds them (rounds_activations_to_bf16; FP8: each times its weight's
// block scale first).
void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out);

// Whether BF16 matrices gain from the kRowBlocks layout (tensor/weight_matrix.h), for a model
// load to regroup them: when their products take the vdpbf16ps kernels under the current
// setting (AVX512_BF16 without AMX, activations not kept in f32), unless the environment sets
// DSV3_ROW_BLOCKS=0. Products with a regrouped matrix give other bits than with the row-major
// one (another summation order), each the same in any batch; under f32 activations a
// regrouped matrix takes the float panel form.
bool row_blocks_pay();

// Row `row` of W as float32 (embedding lookup): out is [w.cols].
void dequantize_row(const WeightMatrix& w, int64_t row, float* out);

}  // namespace dsv3::kernels
