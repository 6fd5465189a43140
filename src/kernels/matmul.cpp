#include "kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/activation_precision.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/matmul_path.h"
#include "kernels/quant_matmul.h"
#include "kernels/simd/isa_kernels.h"
#include "tensor/block_quant.h"
#include "tensor/thread_pool.h"
#include "util/error.h"

namespace dsv3::kernels {

namespace {

// Rows per parallel task: a multiple of the rows of every register tile, so single-row tiles
// occur only at the ends of the threads' row ranges; of a kRowBlocks matrix one group of 32
// rows (a whole group, one stretch of memory).
constexpr int64_t kRowsPerTask = 48;
int64_t rows_per_task(const WeightMatrix& w) {
  return w.layout == WeightLayout::kRowBlocks ? kRowGroupRows : kRowsPerTask;
}
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

// Rows [row_begin, row_end) of the FP8 product with bf16 activations, summed in double: each
// e4m3 value times the activation scaled by the value's block scale and rounded to bf16 (the
// numbers of simd/fp8_bf16_avx512.cpp).
void fp8_bf16_reference_rows(const WeightMatrix& w, const float* x, int64_t n_tokens,
                             int64_t row_begin, int64_t row_end, float* out) {
  const uint8_t* codes = static_cast<const uint8_t*>(w.data);
  std::vector<float> values(size_t(w.cols)), scaled(size_t(w.cols));
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* scales = w.block_scale + (r / w.block_rows) * w.scale_cols;
    for (int64_t c = 0; c < w.cols; ++c) values[size_t(c)] = fp8_e4m3_to_f32(codes[r * w.cols + c]);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * w.cols;
      double sum = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const float activation = bf16_to_f32(f32_to_bf16(xt[c] * scales[c / w.block_cols]));
        sum += double(values[size_t(c)]) * double(activation);
      }
      out[t * w.rows + r] = float(sum);
    }
  }
}

// A stretch of weight bytes a thread reads next (for its prefetch); none when data is null.
struct WeightBytes {
  const void* data = nullptr;
  int64_t bytes = 0;
};

// Blocks [0, n_blocks) of one product taken in turn by the pool's threads, each claiming its
// next block before running the current one: run(block, next) gets the weight bytes the thread
// reads next (bytes_of its following block, or `after` past its last) for the kernel to
// prefetch while the block runs.
template <class BytesOf, class Run>
void for_claimed_blocks(int64_t n_blocks, WeightBytes after, BytesOf&& bytes_of, Run&& run) {
  std::atomic<int64_t> next_block{0};
  const int64_t threads = ThreadPool::global().num_threads();
  ThreadPool::global().parallel_for(std::min(threads, n_blocks), [&](int64_t, int64_t) {
    int64_t block = next_block.fetch_add(1, std::memory_order_relaxed);
    while (block < n_blocks) {
      const int64_t following = next_block.fetch_add(1, std::memory_order_relaxed);
      run(block, following < n_blocks ? bytes_of(following) : after);
      block = following;
    }
  });
}

// Per-thread buffers, grown on demand and kept: no allocation per call once warm.
thread_local std::vector<float> t_panel_scratch;
thread_local std::vector<float> t_x_packed;
thread_local std::vector<uint16_t> t_x_bf16;
thread_local std::vector<uint16_t> t_x_amx;

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

// Activation rows already rounded to bf16 (row r at data + r * stride), shared by the products
// on one x (the routed experts of a prefill pick 6 or 8 of them per token, the shared expert
// reads them all; q_a_proj and kv_a_proj_with_mqa both read the layer's input): each then
// copies its rows instead of rounding them again.
struct RoundedRows {
  const uint16_t* data = nullptr;
  int64_t stride = 0;
};

// x rounded to bf16 and back (exact in float), for the float kernels and the reference.
void round_through_bf16(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

// The vdpbf16ps product: x rounded to bf16 once into a packed copy (rows an odd number of cache
// lines apart), then the rows of out computed in blocks of whole register tiles that the
// threads take in turn, so both stay busy on every matrix, small ones included. x_rows: as
// MatmulItem's (null: row t is x + t * w.cols). `after`: the weights the calling thread reads
// after this product, prefetched while its last block runs.
void matmul_dpbf16(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out,
                   const int64_t* x_rows = nullptr, WeightBytes after = {},
                   RoundedRows rounded = {}) {
  const int64_t x_stride = cache_friendly_stride(w.cols, sizeof(uint16_t));
  const int64_t amx_rows = simd::amx_bf16_rows(w);
  // Rows [0, n_tokens) already rounded (RoundedRows, without AMX): read in place.
  const bool rounded_in_place = rounded.data != nullptr && x_rows == nullptr && amx_rows == 0;
  uint16_t* x_bf16 = rounded_in_place ? nullptr : cache_aligned(t_x_bf16, n_tokens * x_stride);
  uint16_t* x_amx =
      amx_rows > 0 ? cache_aligned(t_x_amx, simd::amx_packed_elements(n_tokens, w.cols)) : nullptr;
  // Tokens in blocks of AMX's 16: each block rounded, then packed for the tiles where AMX runs.
  const int64_t token_blocks = (n_tokens + simd::kAmxTokens - 1) / simd::kAmxTokens;
  auto round_blocks = [&](int64_t block_begin, int64_t block_end) {
    const int64_t token_begin = block_begin * simd::kAmxTokens;
    const int64_t token_end = std::min(n_tokens, block_end * simd::kAmxTokens);
    for (int64_t t = token_begin; t < token_end; ++t) {
      const int64_t row = x_rows != nullptr ? x_rows[t] : t;
      if (rounded.data != nullptr) {
        std::copy_n(rounded.data + row * rounded.stride, w.cols, x_bf16 + t * x_stride);
      } else {
        simd::avx512_round_to_bf16(x + row * w.cols, w.cols, x_bf16 + t * x_stride);
      }
    }
    if (x_amx != nullptr)
      simd::amx_pack_tokens(x_bf16, x_stride, w.cols, n_tokens, token_begin, token_end, x_amx);
  };
  // A few thousand values round in well under a microsecond: cheaper than waking the pool.
  constexpr int64_t kMaxSerialRounding = int64_t(1) << 15;
  if (!rounded_in_place) {
    if (n_tokens * w.cols <= kMaxSerialRounding) {
      round_blocks(0, token_blocks);
    } else {
      ThreadPool::global().parallel_for(token_blocks, round_blocks);
    }
  }
  simd::Bf16MatmulJob job;
  job.w = &w;
  job.x_bf16 = rounded_in_place ? rounded.data : x_bf16;
  job.x_stride = rounded_in_place ? rounded.stride : x_stride;
  job.n_tokens = n_tokens;
  job.out = out;
  // Rows go to the threads and into panels in whole register tiles (kRowBlocks: whole groups of
  // 32 rows, so that a range's weights are one stretch of memory).
  const int64_t tile_rows =
      w.layout == WeightLayout::kRowBlocks ? kRowGroupRows : simd::kBf16TileRows;
  job.panel_rows = panel_rows(w.cols * int64_t(sizeof(uint16_t)), tile_rows);
  job.amx_rows = amx_rows;
  job.x_amx = x_amx;
  // Rows are handed out in blocks from a shared counter rather than one fixed range per thread:
  // on a shared host a thread that loses its core for a while no longer holds the others up.
  // Every output is the same canonical dot product whichever thread computes it, so results
  // do not depend on the distribution. A block is at most a panel, and small enough that each
  // thread gets several even on the 512-row expert matrices. Without AMX the blocks are of
  // equal size (to a register tile) and as many as a multiple of the threads, so that on a
  // quiet host the threads finish together (11 panels of 96 rows left one thread 64 rows idle).
  const int64_t threads = ThreadPool::global().num_threads();
  const int64_t tiles = (w.rows + tile_rows - 1) / tile_rows;
  const int64_t block_tiles = std::clamp<int64_t>(tiles / (4 * threads), 1, job.panel_rows / tile_rows);
  // With AMX, whole pairs of its 16-row tiles per block.
  constexpr int64_t kAmxBlockRows = 32;
  const int64_t amx_block_rows =
      (block_tiles * tile_rows + kAmxBlockRows - 1) / kAmxBlockRows * kAmxBlockRows;
  const int64_t n_blocks =
      amx_rows > 0 ? (w.rows + amx_block_rows - 1) / amx_block_rows
                   : std::min(tiles, ((tiles + block_tiles - 1) / block_tiles + threads - 1) /
                                         threads * threads);
  auto block_begin = [&](int64_t block) {
    return amx_rows > 0 ? std::min(w.rows, block * amx_block_rows)
                        : std::min(w.rows, block * tiles / n_blocks * tile_rows);
  };
  const int64_t row_bytes = w.cols * int64_t(sizeof(uint16_t));
  auto block_bytes = [&](int64_t block) {
    return WeightBytes{static_cast<const char*>(w.data) + block_begin(block) * row_bytes,
                       (block_begin(block + 1) - block_begin(block)) * row_bytes};
  };
  for_claimed_blocks(n_blocks, after, block_bytes, [&](int64_t block, WeightBytes next) {
    simd::Bf16MatmulJob own = job;
    own.prefetch_next = next.data;
    own.prefetch_next_bytes = next.bytes;
    simd::avx512_bf16_matmul_rows(own, block_begin(block), block_begin(block + 1));
  });
}

// Tells the activations of one FP8 product from another's (Fp8MatmulJob::epoch).
uint64_t next_fp8_epoch() {
  static std::atomic<uint64_t> epoch{0};
  return epoch.fetch_add(1, std::memory_order_relaxed) + 1;
}

// Widened bytes per unit of the FP8 kernel's panel form: a whole scale row of 128 x 1024
// (each unit scales and rounds the activations of every token once more; units of 64 rows
// spent 20 % of the expert products on that).
constexpr int64_t kFp8PanelBytes = int64_t(256) << 10;

// Rows per unit of the FP8 kernel (for_fp8_units): few tokens stream whole scale rows in
// place; many take widened panels of up to kFp8PanelBytes.
int64_t fp8_unit_rows(const WeightMatrix& w, int64_t n_tokens) {
  if (n_tokens <= kMaxStreamTokens) return std::max<int64_t>(w.rows, 1);
  const int64_t row_bytes = std::max<int64_t>(w.cols * int64_t(sizeof(uint16_t)), 1);
  return std::max<int64_t>(kFp8PanelBytes / row_bytes / simd::kBf16TileRows, 1) *
         simd::kBf16TileRows;
}

simd::Fp8MatmulJob fp8_job(const WeightMatrix& w, const float* x, const int64_t* x_rows,
                           int64_t n_tokens, float* out) {
  simd::Fp8MatmulJob job;
  job.w = &w;
  job.x = x;
  job.x_rows = x_rows;
  job.n_tokens = n_tokens;
  job.out = out;
  job.x_stride = cache_friendly_stride(w.cols, sizeof(uint16_t));
  job.unit_rows = fp8_unit_rows(w, n_tokens);
  return job;
}

thread_local std::vector<std::pair<int64_t, int64_t>> t_fp8_units;

// The FP8 product on vdpbf16ps for many tokens: its units (for_fp8_units) taken in turn by the
// threads, each claiming its next before running the current one, to prefetch it. `after`: as
// matmul_dpbf16's.
void matmul_fp8_dpbf16(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out,
                       const int64_t* x_rows = nullptr, WeightBytes after = {}) {
  simd::Fp8MatmulJob job = fp8_job(w, x, x_rows, n_tokens, out);
  job.epoch = next_fp8_epoch();
  std::vector<std::pair<int64_t, int64_t>>& units = t_fp8_units;
  units.clear();
  simd::for_fp8_units(w, 0, w.rows, job.unit_rows,
                      [&](int64_t first, int64_t end) { units.emplace_back(first, end); });
  const char* codes = static_cast<const char*>(w.data);
  auto unit_bytes = [&](int64_t unit) {
    const auto [first, end] = units[size_t(unit)];
    return WeightBytes{codes + first * w.cols, (end - first) * w.cols};
  };
  for_claimed_blocks(int64_t(units.size()), after, unit_bytes, [&](int64_t unit, WeightBytes next) {
    simd::Fp8MatmulJob own = job;
    own.prefetch_next = next.data;
    own.prefetch_next_bytes = next.bytes;
    simd::avx512_fp8_matmul_rows(own, units[size_t(unit)].first, units[size_t(unit)].second);
  });
}

}  // namespace

bool row_blocks_pay() {
  const char* setting = std::getenv("DSV3_ROW_BLOCKS");
  if (setting != nullptr && std::string_view(setting) == "0") return false;
  return active_isa() == KernelIsa::kAvx512 && cpu_has_avx512_bf16() && !amx_bf16_active() &&
         activation_precision() != ActivationPrecision::kF32;
}

void dequantize_row(const WeightMatrix& w, int64_t row, float* out) {
  // Row-major float formats directly (the embedding of every prompt token), the others through
  // at().
  if (w.layout == WeightLayout::kRows && (w.dtype == DType::BF16 || w.dtype == DType::F32)) {
    const char* bytes = static_cast<const char*>(w.data) + row * w.row_bytes();
    if (w.dtype == DType::F32) {
      std::memcpy(out, bytes, size_t(w.cols) * sizeof(float));
    } else {
      const auto* bits = reinterpret_cast<const uint16_t*>(bytes);
      for (int64_t c = 0; c < w.cols; ++c) out[c] = bf16_to_f32(bits[c]);
    }
    return;
  }
  for (int64_t c = 0; c < w.cols; ++c) out[c] = w.at(row, c);
}

MatmulPath choose_matmul_path(const WeightMatrix& w, int64_t n_tokens,
                              bool allow_bf16_activations) {
  MatmulPath path;
  if (is_block_quantized(w.dtype)) {
    path.kernel = n_tokens <= kMaxStreamTokens ? MatmulKernel::kQuantStream
                                               : MatmulKernel::kQuantPanel;
    return path;
  }
  path.bf16_activations = allow_bf16_activations && rounds_activations_to_bf16(w);
  const bool stream = n_tokens <= kMaxStreamTokens;
  if (path.bf16_activations && active_isa() == KernelIsa::kAvx512 && cpu_has_avx512_bf16()) {
    if (w.dtype == DType::F8_E4M3) {
      path.kernel = stream ? MatmulKernel::kFp8Stream : MatmulKernel::kFp8Panel;
    } else {
      path.kernel = stream ? MatmulKernel::kBf16Stream : MatmulKernel::kBf16Panel;
    }
    return path;
  }
  if (path.bf16_activations && w.dtype == DType::F8_E4M3) {
    // Activations rounded per scale block: only the reference computes that besides vdpbf16ps.
    path.kernel = MatmulKernel::kReference;
    return path;
  }
  const simd::IsaKernels* kernels = simd::kernels_for(active_isa());
  if (kernels == nullptr || (w.dtype == DType::F8_E4M3 && !fp8_fits_simd(w, kernels->lanes))) {
    path.kernel = MatmulKernel::kReference;
    return path;
  }
  // The float kernels read a kRowBlocks matrix's rows back into row-major panels.
  path.kernel = stream && w.layout == WeightLayout::kRows ? MatmulKernel::kFloatStream
                                                           : MatmulKernel::kFloatPanel;
  path.float_kernels = kernels;
  return path;
}

void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  validate(w, x, n_tokens, out);
  if (w.dtype == DType::F8_E4M3 && rounds_activations_to_bf16(w))
    return fp8_bf16_reference_rows(w, x, n_tokens, 0, w.rows, out);
  if (rounds_activations_to_bf16(w)) {
    float* rounded = cache_aligned(t_x_rounded, n_tokens * w.cols);
    round_through_bf16(x, n_tokens * w.cols, rounded);
    x = rounded;
  }
  matmul_reference_rows(w, x, n_tokens, 0, w.rows, out);
}

namespace {

// True when the product has nothing to compute (zero-filling out when w has no columns).
bool trivial_product(const WeightMatrix& w, int64_t n_tokens, float* out) {
  if (n_tokens == 0 || w.rows == 0) return true;
  if (w.cols == 0) {
    std::fill(out, out + n_tokens * w.rows, 0.0f);
    return true;
  }
  return false;
}

// A few-token product ready for any thread to compute any of its rows: its path, its
// activations as its kernel reads them (rounded to bf16 where the path says so) and its first
// row task among the products run together.
struct StreamProduct {
  const WeightMatrix* w = nullptr;
  MatmulPath path;
  const float* x = nullptr;          // kReference, kFloatStream: [n_tokens][w->cols]
  const uint16_t* x_bf16 = nullptr;  // kBf16Stream: [n_tokens][x_stride]
  const uint16_t* x_amx = nullptr;   // kBf16Stream with amx_rows > 0: x_bf16 packed for AMX
  int64_t amx_rows = 0;
  QuantRowsJob quant;  // kQuantStream: the quantized activations
  uint64_t fp8_epoch = 0;  // kFp8Stream: Fp8MatmulJob::epoch
  int64_t x_stride = 0;
  int64_t n_tokens = 0;
  float* out = nullptr;
  int64_t first_task = 0;
};

int64_t row_tasks(const WeightMatrix& w) {
  return (w.rows + rows_per_task(w) - 1) / rows_per_task(w);
}

// Rows [row_begin, row_end) of one stream product; `next` is where the thread goes on streaming
// afterwards (Bf16MatmulJob::prefetch_next).
void product_rows(const StreamProduct& product, int64_t row_begin, int64_t row_end,
                  WeightBytes next) {
  const WeightMatrix& w = *product.w;
  switch (product.path.kernel) {
    case MatmulKernel::kReference:
      if (w.dtype == DType::F8_E4M3 && product.path.bf16_activations)
        return fp8_bf16_reference_rows(w, product.x, product.n_tokens, row_begin, row_end,
                                       product.out);
      return matmul_reference_rows(w, product.x, product.n_tokens, row_begin, row_end,
                                   product.out);
    case MatmulKernel::kFp8Stream: {
      simd::Fp8MatmulJob job = fp8_job(w, product.x, nullptr, product.n_tokens, product.out);
      job.epoch = product.fp8_epoch;
      job.prefetch_next = next.data;
      job.prefetch_next_bytes = next.bytes;
      return simd::avx512_fp8_matmul_rows(job, row_begin, row_end);
    }
    case MatmulKernel::kFloatStream: {
      simd::MatmulJob job;
      job.w = &w;
      job.x = product.x;
      job.x_stride = w.cols;
      job.n_tokens = product.n_tokens;
      job.out = product.out;
      job.prefetch_next = next.data;
      job.prefetch_next_bytes = next.bytes;
      return product.path.float_kernels->matvec_rows(job, row_begin, row_end);
    }
    case MatmulKernel::kBf16Stream: {
      simd::Bf16MatmulJob job;
      job.w = &w;
      job.x_bf16 = product.x_bf16;
      job.x_stride = product.x_stride;
      job.n_tokens = product.n_tokens;
      job.out = product.out;
      job.panel_rows = panel_rows(w.cols * int64_t(sizeof(uint16_t)), simd::kBf16TileRows);
      job.prefetch_next = next.data;
      job.prefetch_next_bytes = next.bytes;
      job.amx_rows = product.amx_rows;
      job.x_amx = product.x_amx;
      return simd::avx512_bf16_matmul_rows(job, row_begin, row_end);
    }
    case MatmulKernel::kQuantStream:
      return quant_rows(product.quant, row_begin, row_end);
    case MatmulKernel::kFloatPanel:
    case MatmulKernel::kBf16Panel:
    case MatmulKernel::kFp8Panel:
    case MatmulKernel::kQuantPanel:
      return;  // never stream products
  }
}

// The product holding `task` (products in task order).
size_t product_of_task(std::span<const StreamProduct> products, int64_t task) {
  const auto after = std::upper_bound(
      products.begin(), products.end(), task,
      [](int64_t t, const StreamProduct& product) { return t < product.first_task; });
  return size_t(after - products.begin()) - 1;
}

// The weight bytes of rows [row_begin, row_end) of a product, where the kernel reads them as
// one stretch (the rows of a float or vdpbf16ps stream product); none otherwise.
WeightBytes weight_bytes(const StreamProduct& product, int64_t row_begin, int64_t row_end) {
  if (product.path.kernel != MatmulKernel::kBf16Stream &&
      product.path.kernel != MatmulKernel::kFloatStream &&
      product.path.kernel != MatmulKernel::kFp8Stream)
    return {};
  const int64_t row_bytes = product.w->cols * int64_t(dtype_size(product.w->dtype));
  return {static_cast<const char*>(product.w->data) + row_begin * row_bytes,
          (row_end - row_begin) * row_bytes};
}

// The weight bytes of the rows of tasks [task, task_end) in the product holding `task`.
WeightBytes task_bytes(std::span<const StreamProduct> products, int64_t task, int64_t task_end) {
  const StreamProduct& product = products[product_of_task(products, task)];
  const int64_t last_task = std::min(task_end, product.first_task + row_tasks(*product.w));
  const int64_t task_rows = rows_per_task(*product.w);
  return weight_bytes(product, (task - product.first_task) * task_rows,
                      std::min(product.w->rows, (last_task - product.first_task) * task_rows));
}

// Tasks [task_begin, task_end) of the products (in task order); then the thread is expected to
// go on with tasks [next_begin, next_end) (none when next_begin == next_end), whose first
// weights are prefetched while the last rows before them run.
void run_tasks(std::span<const StreamProduct> products, int64_t task_begin, int64_t task_end,
               int64_t next_begin, int64_t next_end) {
  size_t p = product_of_task(products, task_begin);
  for (int64_t task = task_begin; task < task_end; ++p) {
    const StreamProduct& product = products[p];
    const int64_t last_task = std::min(task_end, product.first_task + row_tasks(*product.w));
    const int64_t task_rows = rows_per_task(*product.w);
    const int64_t row_begin = (task - product.first_task) * task_rows;
    const int64_t row_end = std::min(product.w->rows, (last_task - product.first_task) * task_rows);
    WeightBytes next;
    if (last_task < task_end) {
      next = task_bytes(products, last_task, task_end);
    } else if (next_begin < next_end) {
      next = task_bytes(products, next_begin, next_end);
    }
    product_rows(product, row_begin, row_end, next);
    task = last_task;
  }
}

// The tasks [begin, end) one thread works through, packed in one word so that the owner taking
// tasks from the front and a thief taking half from the back agree by one compare-exchange;
// one cache line each, so the owners' claims do not contend.
struct alignas(64) TaskSpan {
  std::atomic<uint64_t> tasks{0};
};
uint64_t pack_span(int64_t begin, int64_t end) { return (uint64_t(begin) << 32) | uint64_t(end); }
int64_t span_begin(uint64_t span) { return int64_t(span >> 32); }
int64_t span_end(uint64_t span) { return int64_t(span & 0xffffffffu); }

// Tasks an owner takes from the front of its span at a time (2 x 32 rows of 1024 BF16 columns =
// 128 KB, about 4 microseconds): the most a thread that loses its core holds up the others, and
// about what one thread is left to finish alone at the end of a product. A decode step's
// attention projections (1.4-2 MB a product, 20-30 microseconds) ran at 0.93 of a plain read
// with claims of 4 x 64 rows, 0.96 with these (BM_DecodeVsRead, 40-50 GB/s).
constexpr int64_t kTasksPerOwnerClaim = 2;

// Takes the back half of the fullest other span into `own` (which is empty); false when every
// span is empty.
bool steal_half(std::span<TaskSpan> spans, size_t own) {
  for (;;) {
    size_t victim = own;
    uint64_t victim_span = 0;
    int64_t most = 0;
    for (size_t i = 0; i < spans.size(); ++i) {
      const uint64_t span = spans[i].tasks.load(std::memory_order_relaxed);
      if (i != own && span_end(span) - span_begin(span) > most) {
        most = span_end(span) - span_begin(span);
        victim = i;
        victim_span = span;
      }
    }
    if (victim == own) return false;
    const int64_t begin = span_begin(victim_span), end = span_end(victim_span);
    const int64_t middle = begin + most / 2;
    if (spans[victim].tasks.compare_exchange_weak(victim_span, pack_span(begin, middle),
                                                  std::memory_order_relaxed)) {
      spans[own].tasks.store(pack_span(middle, end), std::memory_order_relaxed);
      return true;
    }
  }
}

thread_local std::unique_ptr<TaskSpan[]> t_task_spans;
thread_local size_t t_task_span_count = 0;

// Runs every row task of the products on the pool. Each thread starts on its own contiguous
// span of tasks and works through it in order, a few tasks per claim, prefetching the next
// ones as it goes: each thread's weights stream without a break, across matrix boundaries too.
// A thread done with its span takes the back half of the fullest other span, so a thread that
// is late (woken late, or preempted on a busy host) leaves its share to the others instead of
// holding everyone up (parallel_share: nobody waits for a thread that has not started). Which
// thread computes a row never changes its bits.
void run_row_tasks(std::span<const StreamProduct> products, int64_t n_tasks) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t threads = std::min<int64_t>(pool.num_threads(), n_tasks);
  if (threads <= 1) {
    run_tasks(products, 0, n_tasks, 0, 0);
    return;
  }
  if (t_task_span_count < size_t(threads)) {
    t_task_spans = std::make_unique<TaskSpan[]>(size_t(threads));
    t_task_span_count = size_t(threads);
  }
  const std::span<TaskSpan> spans(t_task_spans.get(), size_t(threads));
  for (int64_t i = 0; i < threads; ++i) {
    int64_t begin, end;
    ThreadPool::chunk_range(n_tasks, threads, i, &begin, &end);
    spans[size_t(i)].tasks.store(pack_span(begin, end), std::memory_order_relaxed);
  }
  pool.parallel_share(threads, [&](int64_t own_index, int64_t) {
    const size_t own = size_t(own_index);
    std::atomic<uint64_t>& own_tasks = spans[own].tasks;
    for (;;) {
      uint64_t span = own_tasks.load(std::memory_order_relaxed);
      int64_t begin, take, end;
      do {
        begin = span_begin(span), end = span_end(span);
        take = std::min(kTasksPerOwnerClaim, end - begin);
      } while (take > 0 && !own_tasks.compare_exchange_weak(span, pack_span(begin + take, end),
                                                            std::memory_order_relaxed));
      if (take <= 0) {
        if (!steal_half(spans, own)) return;
        continue;
      }
      run_tasks(products, begin, begin + take, begin + take,
                std::min(end, begin + take + kTasksPerOwnerClaim));
    }
  });
}

// The products of one call to run_stream_products and their rounded activations (per calling
// thread, grown once and kept).
thread_local std::vector<StreamProduct> t_stream_products;
thread_local std::vector<uint16_t> t_stream_bf16;
thread_local std::vector<float> t_stream_rounded;

// Where the activations of stream products go as their kernels read them: buffers sized
// beforehand (activation_values), handed out in order.
struct ActivationSpace {
  static constexpr int64_t kAlign = 32;  // elements: 64 bytes of bf16, 128 of float
  static int64_t aligned(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
  uint16_t* bf16_next = nullptr;
  float* rounded_next = nullptr;
  size_t quant_slot = 0;  // prepare_quant_rows's next slot
};

// The bf16 and float values an item's activations take in an ActivationSpace.
std::pair<int64_t, int64_t> activation_values(const MatmulItem& item, const MatmulPath& path) {
  const WeightMatrix& w = *item.w;
  int64_t bf16_values = 0, rounded_values = 0;
  if (path.kernel == MatmulKernel::kBf16Stream) {
    bf16_values += ActivationSpace::aligned(item.n_tokens *
                                            cache_friendly_stride(w.cols, sizeof(uint16_t)));
    if (simd::amx_bf16_rows(w) > 0)
      bf16_values += ActivationSpace::aligned(simd::amx_packed_elements(item.n_tokens, w.cols));
  } else if (path.bf16_activations) {
    rounded_values += ActivationSpace::aligned(item.n_tokens * w.cols);
  }
  return {bf16_values, rounded_values};
}

// A few-token item ready for any thread to compute any of its rows: its activations prepared
// as its path reads them (rounded to bf16 into `space`, or quantized), on the calling thread.
// Products on the same activations among `earlier` share one quantization.
StreamProduct prepare_stream_product(const MatmulItem& item, const MatmulPath& path,
                                     ActivationSpace& space,
                                     std::span<const StreamProduct> earlier) {
  const WeightMatrix& w = *item.w;
  StreamProduct product;
  product.w = &w;
  product.path = path;
  product.x = item.x;
  product.n_tokens = item.n_tokens;
  product.out = item.out;
  if (path.kernel == MatmulKernel::kBf16Stream) {
    product.x_stride = cache_friendly_stride(w.cols, sizeof(uint16_t));
    product.amx_rows = simd::amx_bf16_rows(w);
    // Products on the same activations (the gate and up projections of a decode step's experts,
    // q_a_proj and kv_a_proj_with_mqa) read one rounded copy: on the calling thread, between two
    // passes of the pool, each copy cost a microsecond or more.
    for (const StreamProduct& other : earlier) {
      if (other.path.kernel == MatmulKernel::kBf16Stream && other.x == item.x &&
          other.n_tokens == item.n_tokens && other.w->cols == w.cols && other.amx_rows == 0 &&
          product.amx_rows == 0) {
        product.x_bf16 = other.x_bf16;
        return product;
      }
    }
    for (int64_t t = 0; t < item.n_tokens; ++t) {
      simd::avx512_round_to_bf16(item.x + t * w.cols, w.cols,
                                 space.bf16_next + t * product.x_stride);
    }
    product.x_bf16 = space.bf16_next;
    space.bf16_next += ActivationSpace::aligned(item.n_tokens * product.x_stride);
    if (product.amx_rows > 0) {
      simd::amx_pack_tokens(product.x_bf16, product.x_stride, w.cols, item.n_tokens, 0,
                            item.n_tokens, space.bf16_next);
      product.x_amx = space.bf16_next;
      space.bf16_next += ActivationSpace::aligned(simd::amx_packed_elements(item.n_tokens, w.cols));
    }
  } else if (path.kernel == MatmulKernel::kQuantStream) {
    // Products on the same activations (the gate and up projections of every expert, q_a_proj
    // and kv_a_proj_with_mqa) share one quantization: it runs on this thread before the pass.
    const StreamProduct* same_input = nullptr;
    for (const StreamProduct& other : earlier) {
      if (other.path.kernel == MatmulKernel::kQuantStream && other.x == item.x &&
          other.n_tokens == item.n_tokens && quantizes_activations_alike(*other.w, w)) {
        same_input = &other;
        break;
      }
    }
    product.quant = same_input != nullptr
                        ? share_quant_rows(same_input->quant, w, item.out)
                        : prepare_quant_rows(w, item.x, item.n_tokens, item.out, space.quant_slot++);
  } else if (w.dtype == DType::F8_E4M3) {
    // kFp8Stream and the FP8 reference scale and round the activations themselves.
    product.fp8_epoch = next_fp8_epoch();
  } else if (path.bf16_activations) {
    // The float kernels on bf16-rounded activations (kernel sets without vdpbf16ps).
    round_through_bf16(item.x, item.n_tokens * w.cols, space.rounded_next);
    product.x = space.rounded_next;
    space.rounded_next += ActivationSpace::aligned(item.n_tokens * w.cols);
  }
  return product;
}

// Computes the few-token items (each with its path) in one pass of the pool. Activations that
// their path rounds to bf16 are rounded here, once per item, on the calling thread (a few
// thousand values: cheaper than waking the pool).
void run_stream_products(std::span<const MatmulItem> items, std::span<const MatmulPath> paths) {
  // Sizes first, so the buffers are not moved while pointers into them are handed out.
  int64_t bf16_values = 0, rounded_values = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto [bf16, rounded] = activation_values(items[i], paths[i]);
    bf16_values += bf16;
    rounded_values += rounded;
  }
  ActivationSpace space;
  space.bf16_next = cache_aligned(t_stream_bf16, bf16_values);
  space.rounded_next = cache_aligned(t_stream_rounded, rounded_values);

  std::vector<StreamProduct>& products = t_stream_products;
  products.clear();
  int64_t n_tasks = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    StreamProduct product = prepare_stream_product(items[i], paths[i], space, products);
    product.first_task = n_tasks;
    products.push_back(product);
    n_tasks += row_tasks(*items[i].w);
  }
  if (!products.empty()) run_row_tasks(products, n_tasks);
}

// The float panel form: weight panels converted to float once, kept in L2 for all tokens.
void matmul_float_panel(const MatmulPath& path, const WeightMatrix& w, const float* x,
                        int64_t n_tokens, float* out) {
  if (path.bf16_activations) {
    // The float kernels on bf16-rounded activations (kernel sets without vdpbf16ps).
    float* rounded = cache_aligned(t_x_rounded, n_tokens * w.cols);
    round_through_bf16(x, n_tokens * w.cols, rounded);
    x = rounded;
  }
  const simd::IsaKernels* kernels = path.float_kernels;
  const int64_t n_tasks = row_tasks(w);
  simd::MatmulJob job;
  job.w = &w;
  job.n_tokens = n_tokens;
  job.out = out;
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
    const int64_t row_begin = task_begin * rows_per_task(w);
    const int64_t row_end = std::min(w.rows, task_end * rows_per_task(w));
    float* panel = cache_aligned(t_panel_scratch, job.panel_rows * job.panel_stride);
    kernels->gemm_rows(job, row_begin, row_end, panel);
  });
}

// A many-token product: enough work to pay for its own passes of the pool. `after`: as
// matmul_dpbf16's.
void run_panel_product(const MatmulPath& path, const MatmulItem& item, WeightBytes after,
                       RoundedRows rounded) {
  if (path.kernel == MatmulKernel::kBf16Panel) {
    return matmul_dpbf16(*item.w, item.x, item.n_tokens, item.out, item.x_rows, after, rounded);
  }
  if (path.kernel == MatmulKernel::kFp8Panel) {
    return matmul_fp8_dpbf16(*item.w, item.x, item.n_tokens, item.out, item.x_rows, after);
  }
  if (path.kernel == MatmulKernel::kQuantPanel) {
    return quant_matmul(*item.w, item.x, item.n_tokens, item.out);
  }
  matmul_float_panel(path, *item.w, item.x, item.n_tokens, item.out);
}

bool is_panel(const MatmulPath& path) {
  return path.kernel == MatmulKernel::kFloatPanel || path.kernel == MatmulKernel::kBf16Panel ||
         path.kernel == MatmulKernel::kFp8Panel || path.kernel == MatmulKernel::kQuantPanel;
}

thread_local std::vector<MatmulItem> t_stream_items;
thread_local std::vector<MatmulPath> t_stream_paths;

thread_local std::vector<MatmulItem> t_group_items;
thread_local std::vector<float> t_gathered_x;
thread_local std::vector<std::pair<size_t, float*>> t_copied_items;

// The items of a group with the picked rows (MatmulItem::x_rows) copied together for the paths
// that read x as one block; items picking the same rows of the same x share one copy.
std::span<const MatmulItem> gather_rows(std::span<const MatmulItem> items) {
  auto copies = [](const MatmulItem& item) {
    if (item.x_rows == nullptr || item.n_tokens == 0 || item.w->rows == 0 || item.w->cols == 0)
      return false;
    const MatmulKernel kernel =
        choose_matmul_path(*item.w, item.n_tokens, !item.float_activations).kernel;
    return kernel != MatmulKernel::kBf16Panel && kernel != MatmulKernel::kFp8Panel;
  };
  int64_t floats = 0;
  for (const MatmulItem& item : items)
    if (copies(item)) floats += item.n_tokens * item.w->cols;
  if (floats == 0) return items;
  float* next = cache_aligned(t_gathered_x, floats);
  std::vector<MatmulItem>& local = t_group_items;
  local.assign(items.begin(), items.end());
  // The items whose rows this call copies, and where to.
  std::vector<std::pair<size_t, float*>>& copied = t_copied_items;
  copied.clear();
  for (size_t i = 0; i < local.size(); ++i) {
    MatmulItem& item = local[i];
    if (!copies(item)) continue;
    const MatmulItem* same = nullptr;
    for (size_t j = 0; j < i && same == nullptr; ++j)
      if (items[j].x == item.x && items[j].x_rows == item.x_rows &&
          items[j].n_tokens == item.n_tokens && items[j].w->cols == item.w->cols &&
          local[j].x_rows == nullptr)
        same = &local[j];
    if (same != nullptr) {
      item.x = same->x;
    } else {
      copied.push_back({i, next});
      item.x = next;
      next += item.n_tokens * item.w->cols;
    }
    item.x_rows = nullptr;
  }
  ThreadPool::global().parallel_claim(int64_t(copied.size()), [&](int64_t k) {
    const auto [index, to] = copied[size_t(k)];
    const MatmulItem& from = items[index];
    const int64_t cols = from.w->cols;
    for (int64_t t = 0; t < from.n_tokens; ++t)
      std::copy_n(from.x + from.x_rows[t] * cols, cols, to + t * cols);
  });
  return local;
}

struct PanelProduct {
  const MatmulItem* item;
  MatmulPath path;
  RoundedRows rounded = {};  // the item's x rows, when rounded once for several products
};
thread_local std::vector<PanelProduct> t_panel_products;
thread_local std::vector<uint16_t> t_shared_rounding;

// The vdpbf16ps products of the group on one x (the routed and shared experts' gate and up
// projections, which all read the layer's input) get the rows they read rounded once, in
// parallel, before any of them runs: rounding a token's row for each of its experts cost a
// 512-token prefill of the bench shape about 3 ms. The rounded rows are bitwise those the
// products would round themselves.
void round_shared_rows(std::vector<PanelProduct>& products) {
  auto shares = [](const PanelProduct& product) {
    return product.path.kernel == MatmulKernel::kBf16Panel &&
           simd::amx_bf16_rows(*product.item->w) == 0;
  };
  const PanelProduct* first = nullptr;
  int64_t sharing = 0, rows = 0;
  for (const PanelProduct& product : products) {
    const MatmulItem& item = *product.item;
    if (!shares(product)) continue;
    if (first == nullptr) first = &product;
    if (item.x != first->item->x || item.w->cols != first->item->w->cols) continue;
    ++sharing;
    if (item.x_rows == nullptr) rows = std::max(rows, item.n_tokens);
    for (int64_t t = 0; item.x_rows != nullptr && t < item.n_tokens; ++t)
      rows = std::max(rows, item.x_rows[t] + 1);
  }
  if (sharing < 2) return;
  const float* x = first->item->x;
  const int64_t cols = first->item->w->cols;
  const int64_t stride = cache_friendly_stride(cols, sizeof(uint16_t));
  uint16_t* rounded = cache_aligned(t_shared_rounding, rows * stride);
  ThreadPool::global().parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      simd::avx512_round_to_bf16(x + r * cols, cols, rounded + r * stride);
  });
  for (PanelProduct& product : products)
    if (shares(product) && product.item->x == x && product.item->w->cols == cols)
      product.rounded = {rounded, stride};
}

// Many-token products. With several per thread (the routed experts of a prefill: dozens of
// products of a few dozen tokens each) every thread takes whole products, biggest first, and
// runs each alone (the pool calls inside run on the calling thread): no synchronisation per
// product and long stretches of work per thread. Otherwise each product is split over the
// threads. Either way every output is the same canonical dot product.
void run_panel_products(std::vector<PanelProduct>& products) {
  round_shared_rows(products);
  ThreadPool& pool = ThreadPool::global();
  const int64_t n = int64_t(products.size());
  // Product i, prefetching the weights of product `following` (the same thread's next) as it
  // finishes.
  auto run_and_finish = [&](int64_t i, int64_t following) {
    const PanelProduct& product = products[size_t(i)];
    WeightBytes after;
    const MatmulKernel next_kernel =
        following < n ? products[size_t(following)].path.kernel : MatmulKernel::kReference;
    if (next_kernel == MatmulKernel::kBf16Panel || next_kernel == MatmulKernel::kFp8Panel) {
      const WeightMatrix& w = *products[size_t(following)].item->w;
      after = {w.data, w.rows * w.row_bytes()};
    }
    run_panel_product(product.path, *product.item, after, product.rounded);
    if (product.item->on_done != nullptr) product.item->on_done(product.item->context);
  };
  if (n < 2 * int64_t(pool.num_threads())) {
    for (int64_t i = 0; i < n; ++i) run_and_finish(i, i + 1);
    return;
  }
  auto work = [](const PanelProduct& product) {
    return product.item->n_tokens * product.item->w->rows * product.item->w->cols;
  };
  std::stable_sort(products.begin(), products.end(),
                   [&](const PanelProduct& a, const PanelProduct& b) { return work(a) > work(b); });
  // As parallel_claim, except that each thread claims its next product before running the
  // current one.
  std::atomic<int64_t> next{0};
  pool.parallel_share(std::min<int64_t>(n, pool.num_threads()), [&](int64_t, int64_t) {
    int64_t i = next.fetch_add(1, std::memory_order_relaxed);
    while (i < n) {
      const int64_t following = next.fetch_add(1, std::memory_order_relaxed);
      run_and_finish(i, following);
      i = following;
    }
  });
}

}  // namespace

void matmul_group(std::span<const MatmulItem> group) {
  for (const MatmulItem& item : group) {
    if (item.w == nullptr) throw Error("matmul_group: an item without a weight");
    validate(*item.w, item.x, item.n_tokens, item.out);
  }
  const std::span<const MatmulItem> items = gather_rows(group);
  // Few-token products share the row tasks of one pass of the pool; a many-token product
  // (panel form) runs on its own.
  std::vector<MatmulItem>& stream_items = t_stream_items;
  std::vector<MatmulPath>& stream_paths = t_stream_paths;
  std::vector<PanelProduct>& panel_products = t_panel_products;
  stream_items.clear();
  stream_paths.clear();
  panel_products.clear();
  for (const MatmulItem& item : items) {
    if (trivial_product(*item.w, item.n_tokens, item.out)) {
      if (item.on_done != nullptr) item.on_done(item.context);
      continue;
    }
    const MatmulPath path =
        choose_matmul_path(*item.w, item.n_tokens, !item.float_activations);
    if (is_panel(path)) {
      panel_products.push_back({&item, path});
      continue;
    }
    stream_items.push_back(item);
    stream_paths.push_back(path);
  }
  run_panel_products(panel_products);
  if (!stream_items.empty()) {
    run_stream_products(stream_items, stream_paths);
    for (const MatmulItem& item : stream_items)
      if (item.on_done != nullptr) item.on_done(item.context);
  }
}

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  const MatmulItem item{&w, x, n_tokens, out};
  matmul_group(std::span(&item, 1));
}

void matmul_f32_activations(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  MatmulItem item{&w, x, n_tokens, out};
  item.float_activations = true;
  matmul_group(std::span(&item, 1));
}

int64_t matmul_row_step(const WeightMatrix& w) {
  // Whole groups of a kRowBlocks matrix; otherwise whole AMX tiles (register tiles of the other
  // kernels end anywhere).
  return w.layout == WeightLayout::kRowBlocks ? kRowGroupRows : 16;
}

void matmul_rows_here(const WeightMatrix& w, const float* x, int64_t n_tokens, int64_t row_begin,
                      int64_t row_end, float* out, const void* prefetch_next,
                      int64_t prefetch_next_bytes) {
  validate(w, x, n_tokens, out);
  const int64_t step = matmul_row_step(w);
  if (row_begin < 0 || row_end > w.rows || row_begin > row_end || row_begin % step != 0 ||
      (row_end % step != 0 && row_end != w.rows))
    throw Error("matmul_rows_here: rows [" + std::to_string(row_begin) + ", " +
                std::to_string(row_end) + ") of " + describe(w) + " do not lie on steps of " +
                std::to_string(step) + " rows");
  if (n_tokens > kMaxStreamTokens)
    throw Error("matmul_rows_here: " + std::to_string(n_tokens) + " tokens (at most " +
                std::to_string(kMaxStreamTokens) + ")");
  if (row_begin == row_end || n_tokens == 0) return;
  if (w.cols == 0) {  // only the rows asked for: other threads may be writing the others
    for (int64_t t = 0; t < n_tokens; ++t)
      std::fill(out + t * w.rows + row_begin, out + t * w.rows + row_end, 0.0f);
    return;
  }
  const MatmulItem item{&w, x, n_tokens, out};
  const MatmulPath path = choose_matmul_path(w, n_tokens);
  // Buffers of this thread's own; the quantization takes the thread's first slot, which only a
  // matmul_group the thread is running uses (hence not from an on_done).
  thread_local std::vector<uint16_t> bf16_buffer;
  thread_local std::vector<float> rounded_buffer;
  const auto [bf16_values, rounded_values] = activation_values(item, path);
  ActivationSpace space;
  space.bf16_next = cache_aligned(bf16_buffer, bf16_values);
  space.rounded_next = cache_aligned(rounded_buffer, rounded_values);
  const StreamProduct product = prepare_stream_product(item, path, space, {});
  product_rows(product, row_begin, row_end, {prefetch_next, prefetch_next_bytes});
}

void matvec_f32_activations_here(const WeightMatrix& w, const float* x, float* out) {
  const MatmulPath path = choose_matmul_path(w, 1, /*bf16_activations_allowed=*/false);
  if ((path.kernel != MatmulKernel::kFloatStream && path.kernel != MatmulKernel::kReference) ||
      w.rows == 0 || w.cols == 0)
    return matmul_f32_activations(w, x, 1, out);
  validate(w, x, 1, out);
  StreamProduct product;
  product.w = &w;
  product.path = path;
  product.x = x;
  product.n_tokens = 1;
  product.out = out;
  product_rows(product, 0, w.rows, {});
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
