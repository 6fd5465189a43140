#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

namespace dsv3::kernels {

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum_squares = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_squares += double(x[i]) * double(x[i]);
  const float inv_rms = float(1.0 / std::sqrt(sum_squares / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv_rms);
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void softmax(float* row, int64_t n) {
  float max_value = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max_value = std::max(max_value, row[i]);
  if (max_value == -INFINITY) {  // fully masked row: torch gives NaN; we give zeros
    std::fill(row, row + n, 0.0f);
    return;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    row[i] = std::exp(row[i] - max_value);
    sum += row[i];
  }
  const float inv_sum = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) row[i] *= inv_sum;
}

}  // namespace dsv3::kernels
