#include "kernels/matmul.h"

#include <vector>

namespace dsv3::kernels {

void dequantize_row(const WeightMatrix& w, int64_t row, float* out) {
  for (int64_t c = 0; c < w.cols; ++c) out[c] = w.at(row, c);
}

void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  std::vector<float> weight_row(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w, r, weight_row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * w.cols;
      double sum = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) sum += double(xt[c]) * double(weight_row[c]);
      out[t * w.rows + r] = float(sum);
    }
  }
}

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  matmul_reference(w, x, n_tokens, out);
}

}  // namespace dsv3::kernels
