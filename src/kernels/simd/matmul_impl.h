// The matmul kernels, written once against a vector type V (simd/avx512.cpp, simd/avx2.cpp)
// and compiled once per instruction set. Include only from those files, after their target
// pragma: everything here has internal linkage so the two compilations never mix.
//
// V provides: F (vector of V::kLanes floats), zero, set1, load, load_partial (the first n lanes,
// others 0), store, add, mul, fma(a, b, c) = a * b + c, reduce_add, reduce_add4(a, b, c, d, out)
// (out[0..3] = bitwise reduce_add of each, in fewer instructions), and the weight loaders
// load_bf16, load_f16, load_fp8 (fp8 * 2^-120, see kFp8BitsFactor), each with a _partial form.
// It also fixes the register tiles: kDotRows rows by kDotTokens tokens for the panel form.
//
// Batch invariance. Every output out[t][r] is computed by the same sequence of operations,
// whatever the number of tokens, the token's place in the batch, the tile or the thread:
//   acc = 0 (one vector); for c = 0, L, 2L, ...: acc = fma(W[r][c .. c+L), x[t][c .. c+L), acc)
//   (the last vector zero-padded in both operands); out[t][r] = V::reduce_add(acc)
// where W is the weight as loaded (FP8: the fp8 bits times block_scale * 2^120, rounded to
// float once). The stream form (few tokens, weights converted in registers) and the panel form
// (many tokens, weights converted once per panel into float) differ only in which loads are
// shared between outputs, never in the arithmetic: a sequence computed alone or inside any
// batch gives bitwise the same result.
#pragma once

#include "kernels/simd/token_tiles_impl.h"
#include "tensor/row_blocks.h"

namespace dsv3::kernels::simd {
namespace {

template <DType kDType>
constexpr int64_t weight_bytes() {
  return kDType == DType::F32 ? 4 : kDType == DType::F8_E4M3 ? 1 : 2;
}

template <class V, DType kDType>
inline typename V::F load_weights(const void* data, int64_t index) {
  if constexpr (kDType == DType::F32) return V::load(static_cast<const float*>(data) + index);
  if constexpr (kDType == DType::BF16) {
    return V::load_bf16(static_cast<const uint16_t*>(data) + index);
  }
  if constexpr (kDType == DType::F16)
    return V::load_f16(static_cast<const uint16_t*>(data) + index);
  if constexpr (kDType == DType::F8_E4M3) {
    return V::load_fp8(static_cast<const uint8_t*>(data) + index);
  }
}

template <class V, DType kDType>
inline typename V::F load_weights_partial(const void* data, int64_t index, int count) {
  if constexpr (kDType == DType::F32) {
    return V::load_partial(static_cast<const float*>(data) + index, count);
  }
  if constexpr (kDType == DType::BF16) {
    return V::load_bf16_partial(static_cast<const uint16_t*>(data) + index, count);
  }
  if constexpr (kDType == DType::F16) {
    return V::load_f16_partial(static_cast<const uint16_t*>(data) + index, count);
  }
  if constexpr (kDType == DType::F8_E4M3) {
    return V::load_fp8_partial(static_cast<const uint8_t*>(data) + index, count);
  }
}

// The factor that turns loaded weights of (row, column block) into true values.
template <DType kDType>
inline float weight_factor(const WeightMatrix& w, int64_t row, int64_t col) {
  if constexpr (kDType == DType::F8_E4M3) {
    return w.block_scale[(row / w.block_rows) * w.scale_cols + col / w.block_cols] * kFp8BitsFactor;
  } else {
    (void)w, (void)row, (void)col;
    return 1.0f;
  }
}

// The canonical dot products (see the top of this file) of kRows weight rows with kTokens
// tokens: out[t * out_stride + i] for i < kRows, t < kTokens. Weight row i starts at
// `weights` + i * weight_stride elements of kDType and is matrix row `row + i` (for the FP8
// block scales); token t starts at x + t * x_stride. Each weight vector is loaded once for all
// kTokens tokens, each token vector once for all kRows rows. kPrefetch: the tile also prefetches
// as many bytes from prefetch_base on as it reads.
template <class V, DType kDType, int kRows, int kTokens, bool kPrefetch>
inline void dot_tile(const WeightMatrix& w, const void* weights, int64_t weight_stride, int64_t row,
                     const float* x, int64_t x_stride, float* out, int64_t out_stride,
                     const char* prefetch_base = nullptr) {
  const int64_t cols = w.cols;
  using F = typename V::F;
  constexpr int L = V::kLanes;
  constexpr int64_t kBytesPerStep = kRows * L * weight_bytes<kDType>();

  F acc[kRows][kTokens];
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t) acc[i][t] = V::zero();

  auto accumulate = [&](const F(&weight_vectors)[kRows], int64_t c, int count) {
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t) {
      const F xv =
          count == L ? V::load(x + t * x_stride + c) : V::load_partial(x + t * x_stride + c, count);
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) acc[i][t] = V::fma(weight_vectors[i], xv, acc[i][t]);
    }
  };

  // FP8 rows are walked one scale block at a time (block_cols is a multiple of L, so the
  // vectors are those of one stretch); the other formats in one stretch.
  const int64_t segment = kDType == DType::F8_E4M3 ? w.block_cols : cols;
  for (int64_t begin = 0; begin < cols; begin += segment) {
    const int64_t end = begin + segment < cols ? begin + segment : cols;
    F factor[kRows];
    if constexpr (kDType == DType::F8_E4M3) {
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) factor[i] = V::set1(weight_factor<kDType>(w, row + i, begin));
    }
    int64_t c = begin;
    for (; c + L <= end; c += L) {
      if constexpr (kPrefetch) {
        // Stepping through the tile after next (into L2) as fast as through this one keeps
        // enough reads in flight, which the hardware prefetcher alone does not for kRows short
        // interleaved streams (+35% GB/s).
        const char* ahead = prefetch_base + c * kRows * weight_bytes<kDType>();
#pragma GCC unroll 8
        for (int64_t b = 0; b < kBytesPerStep; b += 64) __builtin_prefetch(ahead + b, 0, 2);
      }
      F weight_vectors[kRows];
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
        weight_vectors[i] = load_weights<V, kDType>(weights, i * weight_stride + c);
        if constexpr (kDType == DType::F8_E4M3) {
          weight_vectors[i] = V::mul(weight_vectors[i], factor[i]);
        }
      }
      accumulate(weight_vectors, c, L);
    }
    if (c < end) {
      const int count = int(end - c);
      F weight_vectors[kRows];
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
        weight_vectors[i] = load_weights_partial<V, kDType>(weights, i * weight_stride + c, count);
        if constexpr (kDType == DType::F8_E4M3) {
          weight_vectors[i] = V::mul(weight_vectors[i], factor[i]);
        }
      }
      accumulate(weight_vectors, c, count);
    }
  }
  if constexpr (kRows == 4) {
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t)
      V::reduce_add4(acc[0][t], acc[1][t], acc[2][t], acc[3][t], out + t * out_stride);
  } else {
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t)
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) out[t * out_stride + i] = V::reduce_add(acc[i][t]);
  }
}

// Rows [row_begin, row_end) x tokens [token, token + kTokens) in tiles of kRows rows (then
// single rows). Weight row r starts at weights + (r - row_begin) * weight_stride. kPrefetch
// (weights streaming from memory, rows contiguous): each tile prefetches the tile after next,
// which near row_end lies in job.prefetch_next (when given), so that the stream runs on into
// the thread's next range (often another small matrix) instead of starting it cold.
template <class V, DType kDType, int kRows, int kTokens, bool kPrefetch>
void dot_rows(const MatmulJob& job, const void* weights, int64_t weight_stride, int64_t row_begin,
              int64_t row_end, int64_t token) {
  const WeightMatrix& w = *job.w;
  const float* x = job.x + token * job.x_stride;
  float* out = job.out + token * w.rows;
  const auto* weight_bytes_begin = static_cast<const char*>(weights);
  const int64_t row_bytes = weight_stride * weight_bytes<kDType>();
  auto weight_row = [&](int64_t r) { return weight_bytes_begin + (r - row_begin) * row_bytes; };
  const char* range_end = weight_row(row_end);
  auto prefetch_base = [&](int64_t r, int tile_rows) -> const char* {
    if constexpr (!kPrefetch) return nullptr;
    return prefetch_target(weight_row(r) + 2 * tile_rows * row_bytes, range_end,
                           job.prefetch_next, job.prefetch_next_bytes);
  };
  int64_t r = row_begin;
  for (; r + kRows <= row_end; r += kRows) {
    dot_tile<V, kDType, kRows, kTokens, kPrefetch>(w, weight_row(r), weight_stride, r, x,
                                                   job.x_stride, out + r, w.rows,
                                                   prefetch_base(r, kRows));
  }
  for (; r < row_end; ++r) {
    dot_tile<V, kDType, 1, kTokens, kPrefetch>(w, weight_row(r), weight_stride, r, x, job.x_stride,
                                               out + r, w.rows, prefetch_base(r, 1));
  }
}

// ---------------------------------------------------------------------------------------------
// Stream form for few tokens (decode): weights read once per group of up to 8 tokens straight
// from their stored format, converted in registers.
constexpr int kMaxStreamTokens = 8;

template <class V, DType kDType>
void matvec_rows_typed(const MatmulJob& job, int64_t row_begin, int64_t row_end) {
  const WeightMatrix& w = *job.w;
  const void* weights =
      static_cast<const char*>(w.data) + row_begin * w.cols * weight_bytes<kDType>();
  for (int64_t token = 0; token < job.n_tokens; token += kMaxStreamTokens) {
    const int64_t group =
        job.n_tokens - token < kMaxStreamTokens ? job.n_tokens - token : kMaxStreamTokens;
    with_token_count<kMaxStreamTokens>(group, [&](auto tokens) {
      constexpr int kTokens = decltype(tokens)::value;
      constexpr int kRows = kTokens <= 4 ? 4 : 3;  // kRows * kTokens accumulators <= 24
      dot_rows<V, kDType, kRows, kTokens, true>(job, weights, w.cols, row_begin, row_end, token);
    });
  }
}

template <class V>
void matvec_rows(const MatmulJob& job, int64_t row_begin, int64_t row_end) {
  switch (job.w->dtype) {
    case DType::F32:
      return matvec_rows_typed<V, DType::F32>(job, row_begin, row_end);
    case DType::BF16:
      return matvec_rows_typed<V, DType::BF16>(job, row_begin, row_end);
    case DType::F16:
      return matvec_rows_typed<V, DType::F16>(job, row_begin, row_end);
    case DType::F8_E4M3:
      return matvec_rows_typed<V, DType::F8_E4M3>(job, row_begin, row_end);
    default:
      return;  // matmul() validated the dtype
  }
}

// ---------------------------------------------------------------------------------------------
// Panel form for many tokens (prefill): job.panel_rows weight rows at a time are converted to
// float once (F32 weights copied) and kept in L2 while every token passes over them in tiles of
// kDotRows rows x kDotTokens tokens. Panel rows, like the rows of job.x here, lie an odd number
// of cache lines apart (job.panel_stride): with a power-of-two stride the 10 rows a tile reads
// share one L1 set and evict each other.

// Converts rows [row, row + n_rows) of w to floats, row i at panel + i * panel_stride (exactly
// the values dot_tile computes from the stored format).
// A kRowBlocks matrix's rows are first read back into row-major bf16 (the same values).
template <class V, DType kDType>
void convert_panel(const WeightMatrix& w, int64_t row, int64_t n_rows, float* panel,
                   int64_t panel_stride) {
  constexpr int L = V::kLanes;
  const bool row_blocks = kDType == DType::BF16 && w.layout == WeightLayout::kRowBlocks;
  auto* row_copy = row_blocks ? reinterpret_cast<uint16_t*>(thread_scratch_floats((w.cols + 1) / 2))
                              : nullptr;
  const void* data = row_blocks ? row_copy : w.data;
  for (int64_t i = 0; i < n_rows; ++i) {
    float* dst = panel + i * panel_stride;
    if (row_blocks) copy_rows_from_row_blocks(w, row + i, 1, row_copy);
    const int64_t index = row_blocks ? 0 : (row + i) * w.cols;
    typename V::F factor = V::set1(1.0f);
    int64_t c = 0;
    // Vectors never straddle an FP8 scale block: block_cols is a multiple of L.
    for (; c + L <= w.cols; c += L) {
      typename V::F weights = load_weights<V, kDType>(data, index + c);
      if constexpr (kDType == DType::F8_E4M3) {
        if (c % w.block_cols == 0) factor = V::set1(weight_factor<kDType>(w, row + i, c));
        weights = V::mul(weights, factor);
      }
      V::store(dst + c, weights);
    }
    if (c < w.cols) {
      typename V::F weights = load_weights_partial<V, kDType>(data, index + c, int(w.cols - c));
      if constexpr (kDType == DType::F8_E4M3) {
        weights = V::mul(weights, V::set1(weight_factor<kDType>(w, row + i, c)));
      }
      V::store(dst + c, weights);  // the tail lanes are zero
    }
  }
}

template <class V, DType kDType>
void gemm_rows_typed(const MatmulJob& job, int64_t row_begin, int64_t row_end, float* scratch) {
  for (int64_t row0 = row_begin; row0 < row_end; row0 += job.panel_rows) {
    const int64_t row1 = row_end - row0 < job.panel_rows ? row_end : row0 + job.panel_rows;
    convert_panel<V, kDType>(*job.w, row0, row1 - row0, scratch, job.panel_stride);
    for_token_tiles<V::kDotTokens>(job.n_tokens, [&](int64_t, int64_t token, auto tokens) {
      // The panel holds floats: the FP8 scales are already applied.
      dot_rows<V, DType::F32, V::kDotRows, decltype(tokens)::value, false>(
          job, scratch, job.panel_stride, row0, row1, token);
    });
  }
}

template <class V>
void gemm_rows(const MatmulJob& job, int64_t row_begin, int64_t row_end, float* scratch) {
  switch (job.w->dtype) {
    case DType::F32:
      return gemm_rows_typed<V, DType::F32>(job, row_begin, row_end, scratch);
    case DType::BF16:
      return gemm_rows_typed<V, DType::BF16>(job, row_begin, row_end, scratch);
    case DType::F16:
      return gemm_rows_typed<V, DType::F16>(job, row_begin, row_end, scratch);
    case DType::F8_E4M3:
      return gemm_rows_typed<V, DType::F8_E4M3>(job, row_begin, row_end, scratch);
    default:
      return;
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd
