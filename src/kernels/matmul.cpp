#include "kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/activation_precision.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/matmul_path.h"
#include "kernels/simd/isa_kernels.h"
#include "tensor/thread_pool.h"
#include "util/error.h"

namespace dsv3::kernels {

namespace {

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
      w.dtype != DType::F8_E4M3) {
    throw Error("matmul: unsupported weight dtype " + describe(w));
  }
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

thread_local std::vector<float> t_x_rounded;

// x rounded to bf16 and back (exact in float), for the float kernels and the reference.
void round_through_bf16(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

// The vdpbf16ps product: x rounded to bf16 once into a packed copy (rows an odd number of cache
// lines apart), then the rows of out computed in blocks of whole register tiles that the
// threads take in turn, so both stay busy on every matrix, small ones included.
void matmul_dpbf16(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  const int64_t x_stride = cache_friendly_stride(w.cols, sizeof(uint16_t));
  uint16_t* x_bf16 = cache_aligned(t_x_bf16, n_tokens * x_stride);
  auto round_tokens = [&](int64_t token_begin, int64_t token_end) {
    for (int64_t t = token_begin; t < token_end; ++t)
      simd::avx512_round_to_bf16(x + t * w.cols, w.cols, x_bf16 + t * x_stride);
  };
  // A few thousand values round in well under a microsecond: cheaper than waking the pool.
  constexpr int64_t kMaxSerialRounding = int64_t(1) << 15;
  if (n_tokens * w.cols <= kMaxSerialRounding) {
    round_tokens(0, n_tokens);
  } else {
    ThreadPool::global().parallel_for(n_tokens, round_tokens);
  }
  simd::Bf16MatmulJob job;
  job.w = &w;
  job.x_bf16 = x_bf16;
  job.x_stride = x_stride;
  job.n_tokens = n_tokens;
  job.out = out;
  job.panel_rows = panel_rows(w.cols * int64_t(sizeof(uint16_t)), simd::kBf16TileRows);
  // Rows are handed out in blocks from a shared counter rather than one fixed range per thread:
  // on a shared host a thread that loses its core for a while no longer holds the others up.
  // Every output is the same canonical dot product whichever thread computes it, so results
  // do not depend on the distribution. A block is at most a panel, and small enough that each
  // thread gets several even on the 512-row expert matrices.
  const int64_t threads = ThreadPool::global().num_threads();
  const int64_t tiles = (w.rows + simd::kBf16TileRows - 1) / simd::kBf16TileRows;
  const int64_t block_tiles =
      std::clamp<int64_t>(tiles / (4 * threads), 1, job.panel_rows / simd::kBf16TileRows);
  const int64_t block_rows = block_tiles * simd::kBf16TileRows;
  const int64_t n_blocks = (w.rows + block_rows - 1) / block_rows;
  std::atomic<int64_t> next_block{0};
  ThreadPool::global().parallel_for(std::min(threads, n_blocks), [&](int64_t, int64_t) {
    for (int64_t block = next_block.fetch_add(1, std::memory_order_relaxed); block < n_blocks;
         block = next_block.fetch_add(1, std::memory_order_relaxed)) {
      simd::avx512_bf16_matmul_rows(job, block * block_rows,
                                    std::min(w.rows, (block + 1) * block_rows));
    }
  });
}

}  // namespace

void dequantize_row(const WeightMatrix& w, int64_t row, float* out) {
  for (int64_t c = 0; c < w.cols; ++c) out[c] = w.at(row, c);
}

MatmulPath choose_matmul_path(const WeightMatrix& w, int64_t n_tokens,
                              bool allow_bf16_activations) {
  MatmulPath path;
  path.bf16_activations = allow_bf16_activations && rounds_activations_to_bf16(w);
  const bool stream = n_tokens <= kMaxStreamTokens;
  if (path.bf16_activations && active_isa() == KernelIsa::kAvx512 && cpu_has_avx512_bf16()) {
    path.kernel = stream ? MatmulKernel::kBf16Stream : MatmulKernel::kBf16Panel;
    return path;
  }
  const simd::IsaKernels* kernels = simd::kernels_for(active_isa());
  if (kernels == nullptr || (w.dtype == DType::F8_E4M3 && !fp8_fits_simd(w, kernels->lanes))) {
    path.kernel = MatmulKernel::kReference;
    return path;
  }
  path.kernel = stream ? MatmulKernel::kFloatStream : MatmulKernel::kFloatPanel;
  path.float_kernels = kernels;
  return path;
}

void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  validate(w, x, n_tokens, out);
  if (rounds_activations_to_bf16(w)) {
    float* rounded = cache_aligned(t_x_rounded, n_tokens * w.cols);
    round_through_bf16(x, n_tokens * w.cols, rounded);
    x = rounded;
  }
  matmul_reference_rows(w, x, n_tokens, 0, w.rows, out);
}

namespace {

void matmul_with_path(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out,
                      bool allow_bf16_activations) {
  validate(w, x, n_tokens, out);
  if (n_tokens == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(out, out + n_tokens * w.rows, 0.0f);
    return;
  }
  const MatmulPath path = choose_matmul_path(w, n_tokens, allow_bf16_activations);
  if (path.kernel == MatmulKernel::kBf16Stream || path.kernel == MatmulKernel::kBf16Panel) {
    return matmul_dpbf16(w, x, n_tokens, out);
  }
  if (path.bf16_activations) {
    // The float kernels on bf16-rounded activations (kernel sets without vdpbf16ps).
    float* rounded = cache_aligned(t_x_rounded, n_tokens * w.cols);
    round_through_bf16(x, n_tokens * w.cols, rounded);
    x = rounded;
  }
  const int64_t n_tasks = (w.rows + kRowsPerTask - 1) / kRowsPerTask;
  auto task_rows = [&](int64_t task_begin, int64_t task_end, int64_t* row_begin, int64_t* row_end) {
    *row_begin = task_begin * kRowsPerTask;
    *row_end = std::min(w.rows, task_end * kRowsPerTask);
  };
  if (path.kernel == MatmulKernel::kReference) {
    ThreadPool::global().parallel_for(n_tasks, [&](int64_t task_begin, int64_t task_end) {
      int64_t row_begin, row_end;
      task_rows(task_begin, task_end, &row_begin, &row_end);
      matmul_reference_rows(w, x, n_tokens, row_begin, row_end, out);
    });
    return;
  }

  const simd::IsaKernels* kernels = path.float_kernels;
  simd::MatmulJob job;
  job.w = &w;
  job.x = x;
  job.x_stride = w.cols;
  job.n_tokens = n_tokens;
  job.out = out;
  if (path.kernel == MatmulKernel::kFloatStream) {
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

}  // namespace

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  matmul_with_path(w, x, n_tokens, out, true);
}

void matmul_f32_activations(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  matmul_with_path(w, x, n_tokens, out, false);
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
