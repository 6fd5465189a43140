#include "kernels/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu_dispatch.h"
#include "kernels/quant_matmul.h"
#include "kernels/simd/isa_kernels.h"
#include "tensor/block_quant.h"
#include "tensor/thread_pool.h"
#include "util/error.h"

namespace dsv3::kernels {

namespace {

// Up to this many tokens the stream form (weights read once per 8 tokens straight from their
// stored format) wins; above it the panel form, which converts each weight panel to float once
// for all tokens. Both give bitwise the same result for every token (see simd/matmul_impl.h).
constexpr int64_t kMaxStreamTokens = 8;
// Rows per parallel task: a multiple of the rows of every register tile, so single-row tiles
// occur only at the ends of the threads' row ranges.
constexpr int64_t kRowsPerTask = 48;
// Bytes of weights per panel of the panel form: kept in L2 (1 MB per core and up) together
// with a tile of tokens while every token passes over it.
constexpr int64_t kPanelBytes = int64_t(192) << 10;

// Rows per panel of `row_bytes` bytes each, a multiple of `tile_rows`.
int64_t panel_rows(int64_t row_bytes, int64_t tile_rows) {
  const int64_t rows = kPanelBytes / std::max<int64_t>(row_bytes, 1) / tile_rows * tile_rows;
  return std::max(rows, tile_rows);
}

// The row stride, in elements of `element_bytes`, of `cols` columns laid out so that rows lie
// an odd number of 64-byte cache lines apart: the rows a register tile reads together then fall
// in different L1 sets (a power-of-two stride, e.g. 1024 floats, puts them all in one set).
int64_t cache_friendly_stride(int64_t cols, int64_t element_bytes) {
  const int64_t per_line = 64 / element_bytes;
  int64_t lines = (cols + per_line - 1) / per_line;
  if (lines % 2 == 0) ++lines;
  return lines * per_line;
}

std::string describe(const WeightMatrix& w) {
  return std::string(dtype_name(w.dtype)) + " [" + std::to_string(w.rows) + ", " +
         std::to_string(w.cols) + "]";
}

void validate(const WeightMatrix& w, const float* x, int64_t n_tokens, const float* out) {
  if (w.rows < 0 || w.cols < 0) throw Error("matmul: negative shape of weight " + describe(w));
  if (n_tokens < 0) throw Error("matmul: negative token count " + std::to_string(n_tokens));
  if (w.dtype != DType::F32 && w.dtype != DType::BF16 && w.dtype != DType::F16 &&
      w.dtype != DType::F8_E4M3 && !is_block_quantized(w.dtype)) {
    throw Error("matmul: unsupported weight dtype " + describe(w));
  }
  if (is_block_quantized(w.dtype)) validate_quant_weight(w);
  if (w.rows * w.cols > 0 && w.data == nullptr)
    throw Error("matmul: weight " + describe(w) + " has no data");
  if (n_tokens > 0 && w.cols > 0 && x == nullptr)
    throw Error("matmul: no input for " + describe(w));
  if (n_tokens > 0 && w.rows > 0 && out == nullptr)
    throw Error("matmul: no output for " + describe(w));
  if (w.dtype == DType::F8_E4M3) {
    if (w.block_scale == nullptr || w.block_rows <= 0 || w.block_cols <= 0) {
      throw Error("matmul: FP8 weight " + describe(w) + " without block scales");
    }
    if (w.scale_cols < (w.cols + w.block_cols - 1) / w.block_cols) {
      throw Error("matmul: FP8 weight " + describe(w) + " has " + std::to_string(w.scale_cols) +
                  " scale columns, needs " +
                  std::to_string((w.cols + w.block_cols - 1) / w.block_cols));
    }
  }
}

// The SIMD FP8 paths need whole vectors per scale block and block_scale * 2^120 finite.
bool fp8_fits_simd(const WeightMatrix& w, int lanes) {
  if (w.block_cols % lanes != 0) return false;
  const int64_t scale_rows = (w.rows + w.block_rows - 1) / w.block_rows;
  const int64_t used_scale_cols = (w.cols + w.block_cols - 1) / w.block_cols;
  for (int64_t r = 0; r < scale_rows; ++r) {
    for (int64_t c = 0; c < used_scale_cols; ++c) {
      const float scale = w.block_scale[r * w.scale_cols + c];
      if (!(std::fabs(scale) < simd::kFp8MaxFastScale)) return false;  // also catches NaN
    }
  }
  return true;
}


// Rows [row_begin, row_end) of the reference product.
void matmul_reference_rows(const WeightMatrix& w, const float* x, int64_t n_tokens,
                           int64_t row_begin, int64_t row_end, float* out) {
  std::vector<float> weight_row(size_t(w.cols));
  for (int64_t r = row_begin; r < row_end; ++r) {
    dequantize_row(w, r, weight_row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * w.cols;
      double sum = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) sum += double(xt[c]) * double(weight_row[c]);
      out[t * w.rows + r] = float(sum);
    }
  }
}

// Per-thread buffers, grown on demand and kept: no allocation per call once warm.
thread_local std::vector<float> t_panel_scratch;
thread_local std::vector<float> t_x_packed;
thread_local std::vector<uint16_t> t_x_bf16;

// The first 64-byte aligned element of `buffer`, grown to hold `count` elements from there:
// vector loads then never straddle cache lines when the row strides are whole lines.
template <class T>
T* cache_aligned(std::vector<T>& buffer, int64_t count) {
  constexpr size_t kSlack = 64 / sizeof(T);
  if (buffer.size() < size_t(count) + kSlack) buffer.resize(size_t(count) + kSlack);
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - address % 64) % 64) / sizeof(T);
}

}  // namespace

void dequantize_row(const WeightMatrix& w, int64_t row, float* out) {
  for (int64_t c = 0; c < w.cols; ++c) out[c] = w.at(row, c);
}

void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  matmul_reference_rows(w, x, n_tokens, 0, w.rows, out);
}

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  validate(w, x, n_tokens, out);
  if (n_tokens == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(out, out + n_tokens * w.rows, 0.0f);
    return;
  }
  if (is_block_quantized(w.dtype)) return quant_matmul(w, x, n_tokens, out);
  const int64_t n_tasks = (w.rows + kRowsPerTask - 1) / kRowsPerTask;
  auto task_rows = [&](int64_t task_begin, int64_t task_end, int64_t* row_begin, int64_t* row_end) {
    *row_begin = task_begin * kRowsPerTask;
    *row_end = std::min(w.rows, task_end * kRowsPerTask);
  };

  const simd::IsaKernels* kernels = simd::kernels_for(active_isa());
  if (kernels != nullptr && w.dtype == DType::F8_E4M3 && !fp8_fits_simd(w, kernels->lanes)) {
    kernels = nullptr;
  }
  if (kernels == nullptr) {
    ThreadPool::global().parallel_for(n_tasks, [&](int64_t task_begin, int64_t task_end) {
      int64_t row_begin, row_end;
      task_rows(task_begin, task_end, &row_begin, &row_end);
      matmul_reference_rows(w, x, n_tokens, row_begin, row_end, out);
    });
    return;
  }

  simd::MatmulJob job;
  job.w = &w;
  job.x = x;
  job.x_stride = w.cols;
  job.n_tokens = n_tokens;
  job.out = out;
  if (n_tokens <= kMaxStreamTokens) {
    ThreadPool::global().parallel_for(n_tasks, [&](int64_t task_begin, int64_t task_end) {
      int64_t row_begin, row_end;
      task_rows(task_begin, task_end, &row_begin, &row_end);
      kernels->matvec_rows(job, row_begin, row_end);
    });
    return;
  }

  job.x_stride = cache_friendly_stride(w.cols, sizeof(float));
  float* x_packed = cache_aligned(t_x_packed, n_tokens * job.x_stride);
  ThreadPool::global().parallel_for(n_tokens, [&](int64_t token_begin, int64_t token_end) {
    for (int64_t t = token_begin; t < token_end; ++t) {
      std::copy(x + t * w.cols, x + (t + 1) * w.cols, x_packed + t * job.x_stride);
    }
  });
  job.x = x_packed;
  job.panel_stride = cache_friendly_stride(w.cols, sizeof(float));
  job.panel_rows = panel_rows(job.panel_stride * int64_t(sizeof(float)), kernels->dot_rows);
  ThreadPool::global().parallel_for(n_tasks, [&](int64_t task_begin, int64_t task_end) {
    int64_t row_begin, row_end;
    task_rows(task_begin, task_end, &row_begin, &row_end);
    float* panel = cache_aligned(t_panel_scratch, job.panel_rows * job.panel_stride);
    kernels->gemm_rows(job, row_begin, row_end, panel);
  });
}

bool bf16_activations_supported(const WeightMatrix& w) {
  return w.dtype == DType::BF16 && active_isa() == KernelIsa::kAvx512 && cpu_has_avx512_bf16();
}

void matmul_bf16_activations(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  validate(w, x, n_tokens, out);
  if (!bf16_activations_supported(w) || n_tokens == 0 || w.rows == 0 || w.cols == 0) {
    return matmul(w, x, n_tokens, out);
  }
  const int64_t x_stride = cache_friendly_stride(w.cols, sizeof(uint16_t));
  uint16_t* x_bf16 = cache_aligned(t_x_bf16, n_tokens * x_stride);
  ThreadPool::global().parallel_for(n_tokens, [&](int64_t token_begin, int64_t token_end) {
    for (int64_t t = token_begin; t < token_end; ++t) {
      for (int64_t c = 0; c < w.cols; ++c)
        x_bf16[t * x_stride + c] = f32_to_bf16(x[t * w.cols + c]);
    }
  });
  simd::Bf16MatmulJob job;
  job.w = &w;
  job.x_bf16 = x_bf16;
  job.x_stride = x_stride;
  job.n_tokens = n_tokens;
  job.out = out;
  job.panel_rows = panel_rows(w.cols * int64_t(sizeof(uint16_t)), simd::kBf16TileRows);
  const int64_t n_tasks = (w.rows + kRowsPerTask - 1) / kRowsPerTask;
  ThreadPool::global().parallel_for(n_tasks, [&](int64_t task_begin, int64_t task_end) {
    const int64_t row_begin = task_begin * kRowsPerTask;
    const int64_t row_end = std::min(w.rows, task_end * kRowsPerTask);
    simd::avx512_bf16_matmul_rows(job, row_begin, row_end);
  });
}

namespace simd {

const IsaKernels* kernels_for(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kAvx512:
      return &avx512_kernels();
    case KernelIsa::kAvx2:
      return &avx2_kernels();
    case KernelIsa::kScalar:
      return nullptr;
  }
  return nullptr;
}

}  // namespace simd

}  // namespace dsv3::kernels
