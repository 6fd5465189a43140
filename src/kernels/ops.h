// Element-wise and row-wise operations of the transformer block, on float32 rows. Each has a
// scalar reference (the *_reference functions, simple and obviously right) beside the fast
// path, which uses the instruction set of kernels::active_isa().
#pragma once

#include <cstdint>

namespace dsv3::kernels {

// out = x / sqrt(mean(x^2) + eps) * weight, over one row of length n. out may alias x.
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);

// out[i] = silu(gate[i]) * up[i]   (the SwiGLU of the MLPs); out may be gate.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
// out[i] = 1 / (1 + exp(-x[i]))   (the MoE router's scores); out may be x.
void sigmoid(const float* x, int64_t n, float* out);

// In-place softmax of one row of length n. A row whose entries are all -inf becomes zeros.
void softmax(float* row, int64_t n);

// The numerators of that softmax, for a softmax taken in pieces (flash-decoding):
// row[i] = exp(row[i] - max) in place, *row_max = max, *row_sum = the sum of the new entries.
// A row whose entries are all -inf becomes zeros with *row_max = -inf and *row_sum = 0.
void softmax_numerators(float* row, int64_t n, float* row_max, float* row_sum);

// The first index of the largest of x[0..n) (0 when n is 0): a NaN is never larger, and a NaN
// x[0] is kept (greedy decoding over a vocabulary of logits).
int64_t argmax(const float* x, int64_t n);

// sum_i a[i] * b[i] (attention scores).
float dot(const float* a, const float* b, int64_t n);

// y[i] += alpha * x[i] (attention-weighted sums of values).
void axpy(float alpha, const float* x, float* y, int64_t n);

// out[i] = sum over k < count of weights[k] * rows[k][i], added in k order: bitwise out = 0
// followed by axpy(weights[k], rows[k], out) for each k, with every row read at once (the
// MoE's sum of its experts' outputs per token). out must not alias a row.
void weighted_row_sum(const float* const* rows, const float* weights, int64_t count, int64_t n,
                      float* out);

// RoPE: `heads` vectors (vector h at x + h * stride) rotated by one position's `half` cosines
// and sines. Pair i is (2i, 2i + 1) when interleaved, else (i, i + half):
//   first' = first * cos[i] - second * sin[i],  second' = first * sin[i] + second * cos[i].
void rotate_pairs(float* x, int64_t heads, int64_t stride, const float* cos, const float* sin,
                  int64_t half, bool interleaved);

// The scalar references (double accumulation where a sum is taken).
void rms_norm_reference(const float* x, const float* weight, int64_t n, float eps, float* out);
void silu_mul_reference(const float* gate, const float* up, int64_t n, float* out);
void sigmoid_reference(const float* x, int64_t n, float* out);
void softmax_reference(float* row, int64_t n);
void softmax_numerators_reference(float* row, int64_t n, float* row_max, float* row_sum);
int64_t argmax_reference(const float* x, int64_t n);
float dot_reference(const float* a, const float* b, int64_t n);
void axpy_reference(float alpha, const float* x, float* y, int64_t n);
void weighted_row_sum_reference(const float* const* rows, const float* weights, int64_t count,
                                int64_t n, float* out);
void rotate_pairs_reference(float* x, int64_t heads, int64_t stride, const float* cos,
                            const float* sin, int64_t half, bool interleaved);

}  // namespace dsv3::kernels
