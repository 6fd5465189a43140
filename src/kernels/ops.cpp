#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu_dispatch.h"
#include "kernels/simd/isa_kernels.h"

namespace dsv3::kernels {

namespace {

const simd::IsaKernels* active_kernels() { return simd::kernels_for(active_isa()); }

}  // namespace

void rms_norm_reference(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum_squares = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_squares += double(x[i]) * double(x[i]);
  const float inv_rms = float(1.0 / std::sqrt(sum_squares / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv_rms);
}

void silu_mul_reference(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void sigmoid_reference(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

namespace {

// exp(x - max) in place with the row's max and the sum of the results in double (an all -inf,
// i.e. fully masked, row becomes zeros with max -inf and sum 0).
double softmax_numerators_in_double(float* row, int64_t n, float* row_max) {
  float max_value = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max_value = std::max(max_value, row[i]);
  *row_max = max_value;
  if (max_value == -INFINITY) {
    std::fill(row, row + n, 0.0f);
    return 0.0;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    row[i] = std::exp(row[i] - max_value);
    sum += row[i];
  }
  return sum;
}

}  // namespace

void softmax_reference(float* row, int64_t n) {
  float max_value;
  const double sum = softmax_numerators_in_double(row, n, &max_value);
  if (max_value == -INFINITY) return;  // fully masked row: torch gives NaN; we give zeros
  const float inv_sum = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) row[i] *= inv_sum;
}

void softmax_numerators_reference(float* row, int64_t n, float* row_max, float* row_sum) {
  *row_sum = float(softmax_numerators_in_double(row, n, row_max));
}

int64_t argmax_reference(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

float dot_reference(const float* a, const float* b, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += double(a[i]) * double(b[i]);
  return float(sum);
}

void axpy_reference(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void weighted_row_sum_reference(const float* const* rows, const float* weights, int64_t count,
                                int64_t n, float* out) {
  std::fill(out, out + n, 0.0f);
  for (int64_t k = 0; k < count; ++k) axpy_reference(weights[k], rows[k], out, n);
}

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  if (const auto* kernels = active_kernels()) return kernels->rms_norm(x, weight, n, eps, out);
  rms_norm_reference(x, weight, n, eps, out);
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  if (const auto* kernels = active_kernels()) return kernels->silu_mul(gate, up, n, out);
  silu_mul_reference(gate, up, n, out);
}

void sigmoid(const float* x, int64_t n, float* out) {
  if (const auto* kernels = active_kernels()) return kernels->sigmoid(x, n, out);
  sigmoid_reference(x, n, out);
}

void rotate_pairs_reference(float* x, int64_t heads, int64_t stride, const float* cos,
                            const float* sin, int64_t half, bool interleaved) {
  for (int64_t h = 0; h < heads; ++h) {
    float* head = x + h * stride;
    for (int64_t i = 0; i < half; ++i) {
      const int64_t first = interleaved ? 2 * i : i, second = interleaved ? 2 * i + 1 : i + half;
      const float a = head[first], b = head[second];
      head[first] = a * cos[i] - b * sin[i];
      head[second] = a * sin[i] + b * cos[i];
    }
  }
}

void rotate_pairs(float* x, int64_t heads, int64_t stride, const float* cos, const float* sin,
                  int64_t half, bool interleaved) {
  if (const auto* kernels = active_kernels())
    return kernels->rotate_pairs(x, heads, stride, cos, sin, half, interleaved);
  rotate_pairs_reference(x, heads, stride, cos, sin, half, interleaved);
}

void softmax(float* row, int64_t n) {
  if (const auto* kernels = active_kernels()) return kernels->softmax(row, n);
  softmax_reference(row, n);
}

void softmax_numerators(float* row, int64_t n, float* row_max, float* row_sum) {
  if (const auto* kernels = active_kernels())
    return kernels->softmax_numerators(row, n, row_max, row_sum);
  softmax_numerators_reference(row, n, row_max, row_sum);
}

int64_t argmax(const float* x, int64_t n) {
  if (const auto* kernels = active_kernels()) return kernels->argmax(x, n);
  return argmax_reference(x, n);
}

float dot(const float* a, const float* b, int64_t n) {
  if (const auto* kernels = active_kernels()) return kernels->dot(a, b, n);
  return dot_reference(a, b, n);
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  if (const auto* kernels = active_kernels()) return kernels->axpy(alpha, x, y, n);
  axpy_reference(alpha, x, y, n);
}

void weighted_row_sum(const float* const* rows, const float* weights, int64_t count, int64_t n,
                      float* out) {
  if (const auto* kernels = active_kernels())
    return kernels->weighted_row_sum(rows, weights, count, n, out);
  weighted_row_sum_reference(rows, weights, count, n, out);
}

}  // namespace dsv3::kernels
