#include "kernels/matmul_transposed.h"

#include <algorithm>
#include <string>

#include "kernels/cpu_dispatch.h"
#include "kernels/simd/quant_kernels.h"
#include "tensor/block_quant.h"
#include "tensor/thread_pool.h"
#include "util/error.h"

namespace dsv3::kernels {

namespace {

// Columns per task: one packed Q4 chunk, 8 vectors of accumulators per token.
constexpr int64_t kTaskCols = simd::kTransposedBlockCols;

int64_t column_tasks(const WeightMatrix& w) { return (w.cols + kTaskCols - 1) / kTaskCols; }

// The portable kernel: columns [col_begin, col_end), every token, rows in order.
void transposed_columns_portable(const WeightMatrix& w, const float* x, int64_t n_tokens,
                                 float* out, int64_t col_begin, int64_t col_end) {
  const bool quantized = is_block_quantized(w.dtype);
  const auto* codes = static_cast<const uint8_t*>(w.data);
  for (int64_t t = 0; t < n_tokens; ++t) {
    float sums[kTaskCols] = {};
    for (int64_t r = 0; r < w.rows; ++r) {
      const float x_r = x[t * w.rows + r];
      for (int64_t c = col_begin; c < col_end; ++c) {
        const float weight = quantized
                                 ? float(quant_value(w.dtype, codes + r * w.row_bytes(), c)) *
                                       f16_to_f32(w.group_scale[r * w.scale_cols + c / kQuantGroup])
                                 : w.at(r, c);
        sums[c - col_begin] += x_r * weight;
      }
    }
    std::copy(sums, sums + (col_end - col_begin), out + t * w.cols + col_begin);
  }
}

void validate(const TransposedMatmulItem& item) {
  if (item.w == nullptr) throw Error("matmul_transposed_group: an item without a weight");
  const WeightMatrix& w = *item.w;
  const std::string shape = std::string(dtype_name(w.dtype)) + " [" + std::to_string(w.rows) +
                            ", " + std::to_string(w.cols) + "]";
  if (w.rows < 0 || w.cols < 0 || item.n_tokens < 0)
    throw Error("matmul_transposed_group: negative shape with weight " + shape);
  if (w.rows * w.cols > 0 && w.data == nullptr)
    throw Error("matmul_transposed_group: weight " + shape + " has no data");
  if (is_block_quantized(w.dtype) && w.rows * w.cols > 0 &&
      (w.group_scale == nullptr || w.scale_cols != quant_groups(w.cols)))
    throw Error("matmul_transposed_group: " + shape + " weight without its group scales");
  if (item.n_tokens > 0 && w.cols > 0 && (item.out == nullptr || (w.rows > 0 && item.x == nullptr)))
    throw Error("matmul_transposed_group: no input or output for weight " + shape);
}

}  // namespace

void matmul_transposed_group(std::span<const TransposedMatmulItem> items) {
  int64_t n_tasks = 0;
  for (const TransposedMatmulItem& item : items) {
    validate(item);
    if (item.n_tokens > 0) n_tasks += column_tasks(*item.w);
  }
  const bool simd = active_isa() == KernelIsa::kAvx512;
  // Tasks are (item, block of columns) in item order; a claimed task finds its item by counting.
  ThreadPool::global().parallel_claim(n_tasks, [&](int64_t task) {
    for (const TransposedMatmulItem& item : items) {
      if (item.n_tokens == 0) continue;
      const WeightMatrix& w = *item.w;
      if (task >= column_tasks(w)) {
        task -= column_tasks(w);
        continue;
      }
      const int64_t col_begin = task * kTaskCols, col_end = std::min(w.cols, col_begin + kTaskCols);
      if (simd && is_block_quantized(w.dtype) && w.rows > 0) {
        simd::avx512_quant_transposed_columns(w, item.x, item.n_tokens, item.out, col_begin,
                                              col_end);
      } else {
        transposed_columns_portable(w, item.x, item.n_tokens, item.out, col_begin, col_end);
      }
      return;
    }
  });
}

void matmul_transposed_reference(const WeightMatrix& w, const float* x, int64_t n_tokens,
                                 float* out) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t c = 0; c < w.cols; ++c) {
      double sum = 0.0;
      for (int64_t r = 0; r < w.rows; ++r) sum += double(x[t * w.rows + r]) * double(w.at(r, c));
      out[t * w.cols + c] = float(sum);
    }
  }
}

}  // namespace dsv3::kernels
