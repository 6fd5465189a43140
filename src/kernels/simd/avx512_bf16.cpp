// The kernel of kernels::matmul for BF16 weights with bf16 activations (activation_precision.h,
// MatmulKernel::kBf16Stream / kBf16Panel): activations rounded to bf16 times the weights with
// vdpbf16ps (AVX512_BF16: 32 multiply-adds per instruction, twice the float FMA rate),
// accumulating in float. Run only when cpu_has_avx512_bf16().
//
// Batch invariance, as for matmul (see matmul_impl.h): every output out[t][r] is
//   acc = 0 (16 floats); for c = 0, 32, 64, ...: acc = vdpbf16ps(acc, W[r][c .. c+32),
//   x[t][c .. c+32)) (the last vector zero-padded in both operands); out[t][r] = reduce(acc)
// with one fixed reduction tree, whatever the number of tokens, the tile or the thread. Lane l
// of acc thus takes the column pairs (c + 2l, c + 2l + 1) in increasing c. The weights are read
// in place (no conversion), so decode and prefill share the one tile kernel and differ only in
// the loop order around it.

// GCC 12's AVX-512 headers: see avx512.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/simd/isa_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")

#include "kernels/simd/fp8_bf16_avx512_impl.h"
#include "kernels/simd/reduce_avx512_impl.h"
#include "kernels/simd/round_bf16_avx512_impl.h"
#include "kernels/simd/token_tiles_impl.h"

namespace dsv3::kernels::simd {
namespace {

constexpr int kPairsPerVector = 16;
constexpr int kColsPerVector = 2 * kPairsPerVector;
// Register tile of the prefill loop: 4 rows x 6 tokens = 24 accumulators of 32 registers.
constexpr int kTileRows = kBf16TileRows;
constexpr int kTileTokens = 6;
// Up to this many tokens the weights stream from memory once per group (decode).
constexpr int kMaxStreamTokens = 8;

__mmask32 first_elements(int64_t count) {
  return count >= kColsPerVector ? ~__mmask32(0) : __mmask32((1u << count) - 1u);
}

__m512bh load_pairs(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
__m512bh load_pairs_partial(const uint16_t* p, int64_t count) {
  return (__m512bh)_mm512_maskz_loadu_epi16(first_elements(count), p);
}
// The same from e4m3 codes, widened exactly (FP8 rows read in place by the stream tiles).
__m512bh load_pairs(const uint8_t* p) {
  return (__m512bh)fp8_to_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
__m512bh load_pairs_partial(const uint8_t* p, int64_t count) {
  return (__m512bh)fp8_to_bf16(_mm256_maskz_loadu_epi8(first_elements(count), p));
}

// The locality hint of the stream tiles' prefetches: into L1 (prefetcht0) for up to 3 tokens,
// into L2 (prefetcht1) for more. Measured on groups of expert-sized BF16 matrices (14 x
// [512,1024] then 7 x [1024,512], 600 MB on 2 MB pages) against a plain read of the same
// memory: with 1-3 tokens prefetcht0 streamed at 0.85-0.97 of the plain read, prefetcht1 at
// 0.79-0.92 (and at 0.56, 32.5 of 59 GB/s, when the host gave ~59); with 4 and 6 tokens
// prefetcht0 lost (0.76 vs 0.80, 0.82 vs 0.92): two tiles ahead, the current tile and the
// tokens' activations (2 KB each at 1024 columns) then no longer fit in a 32 KB L1 together.
constexpr int prefetch_locality(int tokens) { return tokens <= 3 ? 3 : 2; }

// The canonical dot products of kRows weight rows (from matrix row `row`) with kTokens tokens
// (from token `token`): each weight vector is loaded once for all tokens, each token vector
// once for all rows.
// With kPrefetch, the tile also prefetches the kRows * cols weights from `prefetch_base` on.
// kLocality: the prefetch hint (3 = L1, 2 = L2).
// With kSpread, it prefetches into L2 one line per column vector from `prefetch_base`, for
// the first spread_lines vectors (the next panel, a few lines per tile: see gemm_rows). With
// kRowPrefetch, into L1 the same columns of kRows rows from `prefetch_base` on (the next
// tile's, see chunked_gemm_rows).
// `columns`: the stretch of the rows the call covers (long rows go in chunks, see
// chunked_gemm_rows): the accumulators start from `partial` unless it begins at column 0, and
// go back there unless it ends the row; only the call that ends the row reduces them.
// Element: the stored weights, bf16 (uint16_t) or e4m3 codes (uint8_t, FP8 rows streamed in
// place and widened in registers; their block scales are in the activations, see
// fp8_bf16_avx512.cpp).
struct Columns {
  int64_t begin = 0;
  int64_t end = -1;         // -1: the row's end
  float* partial = nullptr;  // kRows x kTokens x 16 floats
};
template <int kRows, int kTokens, bool kPrefetch, int kLocality = prefetch_locality(kTokens),
          bool kSpread = false, bool kRowPrefetch = false, class Element = uint16_t>
inline void dot_tile(const Bf16MatmulJob& job, int64_t row, int64_t token,
                     const char* prefetch_base = nullptr, int64_t spread_lines = 0,
                     Columns columns = {}) {
  constexpr int64_t kBytes = sizeof(Element);
  const int64_t cols = job.w->cols;
  const int64_t end = columns.end < 0 ? cols : columns.end;
  const Element* weights = static_cast<const Element*>(job.w->data) + row * cols;
  const uint16_t* x = job.x_bf16 + (token - job.x_first_token) * job.x_stride;

  __m512 acc[kRows][kTokens];
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t)
      acc[i][t] = columns.begin == 0 ? _mm512_setzero_ps()
                                     : _mm512_load_ps(columns.partial + (i * kTokens + t) * 16);

  auto accumulate = [&](const __m512bh(&weight_vectors)[kRows], int64_t c, int64_t count) {
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t) {
      const __m512bh xv = count == kColsPerVector
                              ? load_pairs(x + t * job.x_stride + c)
                              : load_pairs_partial(x + t * job.x_stride + c, count);
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i)
        acc[i][t] = _mm512_dpbf16_ps(acc[i][t], weight_vectors[i], xv);
    }
  };
  int64_t c = columns.begin;
  for (; c + kColsPerVector <= end; c += kColsPerVector) {
    if constexpr (kRowPrefetch) {
      const int64_t step = c - columns.begin;
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i)
        __builtin_prefetch(prefetch_base + (i * cols + step) * kBytes, 0, 3);
    }
    if constexpr (kSpread) {
      const int64_t step = c - columns.begin;
      if (step < spread_lines * kColsPerVector)
        __builtin_prefetch(prefetch_base + step * kBytes, 0, 2);
    }
    if constexpr (kPrefetch) {
      const char* ahead = prefetch_base + c * kRows * kBytes;
#pragma GCC unroll 8
      for (int b = 0; b < kRows * kColsPerVector * kBytes; b += 64)
        __builtin_prefetch(ahead + b, 0, kLocality);
    }
    __m512bh weight_vectors[kRows];
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) weight_vectors[i] = load_pairs(weights + i * cols + c);
    accumulate(weight_vectors, c, kColsPerVector);
  }
  if (c < end) {
    __m512bh weight_vectors[kRows];
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      weight_vectors[i] = load_pairs_partial(weights + i * cols + c, end - c);
    }
    accumulate(weight_vectors, c, end - c);
  }
  if (end < cols) {
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 8
      for (int t = 0; t < kTokens; ++t)
        _mm512_store_ps(columns.partial + (i * kTokens + t) * 16, acc[i][t]);
    return;
  }
  const int64_t out_stride = job.out_stride != 0 ? job.out_stride : job.w->rows;
  float* out = job.out + token * out_stride + row;
  if constexpr (kRows == 1) {
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t) out[t * out_stride] = reduce_add_avx512(acc[0][t]);
  } else {
    static_assert(kRows <= 4);
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t) {
      const __m128 sums = reduce_add4_avx512(acc[0][t], acc[1][t],
                                             kRows > 2 ? acc[kRows > 2 ? 2 : 0][t] : zero,
                                             kRows > 3 ? acc[kRows > 3 ? 3 : 0][t] : zero);
      if constexpr (kRows == 4) {
        _mm_storeu_ps(out + t * out_stride, sums);
      } else {
        _mm_mask_storeu_ps(out + t * out_stride, __mmask8((1u << kRows) - 1u), sums);
      }
    }
  }
}

// Rows [row_begin, row_end) as register tiles: tile(std::integral_constant<int, kRows>(), row)
// for each whole tile of kRows rows, then tile(std::integral_constant<int, 1>(), row) for each
// row left.
template <int kRows, class Tile>
inline void for_row_tiles(int64_t row_begin, int64_t row_end, Tile&& tile) {
  int64_t row = row_begin;
  for (; row + kRows <= row_end; row += kRows) tile(std::integral_constant<int, kRows>(), row);
  for (; row < row_end; ++row) tile(std::integral_constant<int, 1>(), row);
}

// Rows [row_begin, row_end) x tokens [token, token + kTokens).
template <int kRows, int kTokens>
void dot_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end, int64_t token) {
  for_row_tiles<kRows>(row_begin, row_end, [&](auto rows, int64_t row) {
    dot_tile<decltype(rows)::value, kTokens, false>(job, row, token);
  });
}

// dot_rows whose tiles also prefetch, into L2, the rows `ahead_rows` further on (prefill).
template <int kRows, int kTokens>
void prefetching_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end, int64_t token,
                      int64_t ahead_rows) {
  const int64_t row_bytes = job.w->cols * int64_t(sizeof(uint16_t));
  const char* weights = static_cast<const char*>(job.w->data);
  for_row_tiles<kRows>(row_begin, row_end, [&](auto rows, int64_t row) {
    dot_tile<decltype(rows)::value, kTokens, true, 2>(job, row, token,
                                                      weights + (row + ahead_rows) * row_bytes);
  });
}

// Bytes a stream tile reads ahead of itself: two tiles of bf16 rows (four of e4m3 rows: the
// bytes in flight are what keeps the stream going). Further ahead was measured slower.
template <int kRows>
int64_t prefetch_distance(const Bf16MatmulJob& job) {
  return 2 * kRows * job.w->cols * int64_t(sizeof(uint16_t));
}

// dot_rows for few tokens, the weights streaming from memory: each tile prefetches the bytes
// prefetch_distance ahead of it, which near row_end lie in job.prefetch_next (when given) so
// that the stream runs on into the thread's next range.
template <int kRows, int kTokens, class Element>
void stream_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  const int64_t row_bytes = job.w->cols * int64_t(sizeof(Element));
  const char* weights = static_cast<const char*>(job.w->data);
  const char* range_end = weights + row_end * row_bytes;
  auto prefetch_base = [&](int64_t row) {
    return prefetch_target(weights + row * row_bytes + prefetch_distance<kRows>(job), range_end,
                           job.prefetch_next, job.prefetch_next_bytes);
  };
  for_row_tiles<kRows>(row_begin, row_end, [&](auto rows, int64_t row) {
    dot_tile<decltype(rows)::value, kTokens, true, prefetch_locality(kTokens), false, false,
             Element>(job, row, 0, prefetch_base(row));
  });
}

// The weights of the panel a thread computes after the current one, prefetched into L2 while
// the current panel's second and later passes run from L2: the panel would otherwise come from
// DRAM during its own first pass, which then runs at memory speed (measured on 96-row expert
// panels: 2.5 times as long as a later pass). Spread evenly, a few lines per tile, over those
// passes: a whole panel at once measured no faster, its misses crowding out the pass's own.
struct SpreadPrefetch {
  const char* next = nullptr;
  const char* end = nullptr;
  int64_t lines_per_tile = 0;
};

// dot_rows whose tiles also prefetch the next lines of `spread`.
template <int kRows, int kTokens>
void spreading_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end, int64_t token,
                    SpreadPrefetch& spread) {
  for_row_tiles<kRows>(row_begin, row_end, [&](auto rows, int64_t row) {
    constexpr int kTile = decltype(rows)::value;
    const int64_t lines = std::min({spread.lines_per_tile, (spread.end - spread.next) / 64,
                                    job.w->cols / kColsPerVector});
    if (lines <= 0) return dot_tile<kTile, kTokens, false>(job, row, token);
    dot_tile<kTile, kTokens, false, 3, true>(job, row, token, spread.next, lines);
    spread.next += lines * 64;
  });
}

// The job of one pass over tokens [token, token + count): job itself, or, when it asks for
// each pass's activations (FP8 weights), one reading them where pass_activations put them.
Bf16MatmulJob pass_job(const Bf16MatmulJob& job, int64_t token, int64_t count) {
  if (job.pass_activations == nullptr) return job;
  Bf16MatmulJob pass = job;
  pass.x_bf16 = job.pass_activations(job.pass_context, token, count);
  pass.x_first_token = token;
  return pass;
}

// Columns per chunk of a long row (chunked_gemm_rows): a token tile's chunk, 6 x 2 KB, stays
// in L1 with room for the weights passing through.
constexpr int64_t kChunkCols = 1024;

// Prefill over rows of more than two chunks (DeepSeek-V3's 7168 columns and up): a token tile
// of whole rows (6 x 14 KB there) no longer fits in L1, and every multiply-add would wait on
// L2. The columns go in chunks instead: the token tile's chunk stays in L1 while it meets
// every row tile of the panel, whose accumulators wait in a per-thread buffer between chunks.
// Each output's vdpbf16ps sequence (columns in order into one accumulator) is unchanged, and
// so are its bits.
void chunked_gemm_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  const int64_t cols = job.w->cols;
  const int64_t chunks = (cols + kChunkCols - 1) / kChunkCols;
  const int64_t chunk_cols =
      ((cols + chunks - 1) / chunks + kColsPerVector - 1) / kColsPerVector * kColsPerVector;
  // Row r of the panel keeps its accumulators at partial + (r - row0) * kTileTokens * 16.
  constexpr int64_t kRowFloats = kTileTokens * 16;
  const int64_t panel_rows = job.panel_rows;
  const uint16_t* weights = static_cast<const uint16_t*>(job.w->data);
  float* partial = thread_scratch_floats(panel_rows * kRowFloats);
  const int64_t passes = (job.n_tokens + kTileTokens - 1) / kTileTokens;
  for (int64_t row0 = row_begin; row0 < row_end; row0 += panel_rows) {
    const int64_t row1 = row_end - row0 < panel_rows ? row_end : row0 + panel_rows;
    // The last panel prefetches, into L2, as many of job.prefetch_next's bytes as it has,
    // spread over its (pass, chunk) steps (the FP8 kernel's next codes to widen, see gemm_rows).
    SpreadPrefetch spread;
    if (row1 == row_end && job.prefetch_next != nullptr) {
      spread.next = static_cast<const char*>(job.prefetch_next);
      spread.end = spread.next + std::min(job.prefetch_next_bytes,
                                          (row1 - row0) * cols * int64_t(sizeof(uint16_t)));
      spread.lines_per_tile = ((spread.end - spread.next) / 64 + passes * chunks - 1) /
                              (passes * chunks);
    }
    for_token_tiles<kTileTokens>(job.n_tokens, [&](int64_t, int64_t token, auto tokens) {
      constexpr int kTokens = decltype(tokens)::value;
      const Bf16MatmulJob pass = pass_job(job, token, kTokens);
      for (int64_t c0 = 0; c0 < cols; c0 += chunk_cols) {
        for (int64_t line = 0; line < spread.lines_per_tile && spread.next < spread.end; ++line) {
          __builtin_prefetch(spread.next, 0, 2);
          spread.next += 64;
        }
        Columns columns{c0, cols - c0 < chunk_cols ? cols : c0 + chunk_cols, nullptr};
        for_row_tiles<kTileRows>(row0, row1, [&](auto rows, int64_t row) {
          constexpr int kRows = decltype(rows)::value;
          columns.partial = partial + (row - row0) * kRowFloats;
          if constexpr (kRows == 1) {
            dot_tile<1, kTokens, false>(pass, row, token, nullptr, 0, columns);
          } else {
            // Each tile prefetches the next one's chunk of rows (after the panel's last tile,
            // the first tile's next chunk): 4 short stretches 2 * cols bytes apart, which the
            // hardware prefetcher picks up late (+15 % at 7168 columns and 48 tokens).
            const bool last = row + 2 * kRows > row1;
            const uint16_t* next =
                weights + (last ? row0 : row + kRows) * cols + (last ? columns.end : c0);
            dot_tile<kRows, kTokens, false, 3, false, true>(
                pass, row, token, reinterpret_cast<const char*>(next), 0, columns);
          }
        });
      }
    });
  }
}

void gemm_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  if (job.n_tokens <= kMaxStreamTokens) {
    // Decode: the weights stream from memory once, up to 8 tokens riding along.
    const Bf16MatmulJob pass = pass_job(job, 0, job.n_tokens);
    with_token_count<kMaxStreamTokens>(job.n_tokens, [&](auto tokens) {
      constexpr int kTokens = decltype(tokens)::value;
      constexpr int kRows = kTokens <= 4 ? 4 : 3;
      if (job.w->dtype == DType::F8_E4M3) {
        stream_rows<kRows, kTokens, uint8_t>(pass, row_begin, row_end);
      } else {
        stream_rows<kRows, kTokens, uint16_t>(pass, row_begin, row_end);
      }
    });
    return;
  }
  if (job.w->cols > 2 * kChunkCols) return chunked_gemm_rows(job, row_begin, row_end);
  // Prefill: a panel of rows stays in L2 while every token passes over it; each token tile
  // stays in L1 across the panel's row tiles. The weights come from DRAM (an expert's are
  // touched once per layer), so they are prefetched rather than waited for: the range's first
  // panel two row tiles ahead during its first pass, every next panel (the next rows of the
  // range, then job.prefetch_next) spread over the later passes of the one before it.
  const int64_t row_bytes = job.w->cols * int64_t(sizeof(uint16_t));
  const char* weights = static_cast<const char*>(job.w->data);
  const int64_t passes = (job.n_tokens + kTileTokens - 1) / kTileTokens;  // >= 2
  for (int64_t row0 = row_begin; row0 < row_end; row0 += job.panel_rows) {
    const int64_t row1 = row_end - row0 < job.panel_rows ? row_end : row0 + job.panel_rows;
    const int64_t panel_bytes = job.panel_rows * row_bytes;
    SpreadPrefetch spread;
    if (row1 < row_end) {
      spread.next = weights + row1 * row_bytes;
      spread.end = spread.next + std::min(panel_bytes, (row_end - row1) * row_bytes);
    } else if (job.prefetch_next != nullptr) {
      spread.next = static_cast<const char*>(job.prefetch_next);
      spread.end = spread.next + std::min(panel_bytes, job.prefetch_next_bytes);
    }
    const int64_t spread_tiles = (passes - 1) * ((row1 - row0 + kTileRows - 1) / kTileRows);
    spread.lines_per_tile = ((spread.end - spread.next) / 64 + spread_tiles - 1) / spread_tiles;
    for_token_tiles<kTileTokens>(job.n_tokens, [&](int64_t pass, int64_t token, auto tokens) {
      constexpr int kTokens = decltype(tokens)::value;
      const Bf16MatmulJob pass_of_tokens = pass_job(job, token, kTokens);
      if (pass == 0 && row0 == row_begin) {
        prefetching_rows<kTileRows, kTokens>(pass_of_tokens, row0, row1, token, 2 * kTileRows);
      } else if (pass > 0 && spread.next < spread.end) {
        spreading_rows<kTileRows, kTokens>(pass_of_tokens, row0, row1, token, spread);
      } else {
        dot_rows<kTileRows, kTokens>(pass_of_tokens, row0, row1, token);
      }
    });
  }
}

// out[i] = f32_to_bf16(x[i] * scale), or of x[i] itself without a scale.
template <bool kScaled>
void round_row_to_bf16(const float* x, int64_t n, uint16_t* out, float scale = 1.0f) {
  const __m512 factor = _mm512_set1_ps(scale);
  auto value = [&](__m512 v) { return kScaled ? _mm512_mul_ps(v, factor) : v; };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        round_to_bf16(value(_mm512_loadu_ps(x + i))));
  }
  if (i < n) {
    const __mmask16 mask = __mmask16((1u << (n - i)) - 1u);
    _mm256_mask_storeu_epi16(out + i, mask,
                             round_to_bf16(value(_mm512_maskz_loadu_ps(mask, x + i))));
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd

#pragma GCC pop_options

namespace dsv3::kernels::simd {

void avx512_bf16_matmul_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  if (job.w->layout == WeightLayout::kRowBlocks)
    return avx512_bf16_row_blocks_matmul_rows(job, row_begin, row_end);
  // Rows [0, job.amx_rows) on AMX: the split depends on the matrix only (batch invariance).
  const int64_t amx_end = std::min(row_end, job.amx_rows);
  if (row_begin < amx_end) {
    amx_bf16_matmul_rows(job, row_begin, amx_end);
    row_begin = amx_end;
  }
  if (row_begin < row_end) gemm_rows(job, row_begin, row_end);
}

void avx512_round_to_bf16(const float* x, int64_t n, uint16_t* out) {
  round_row_to_bf16<false>(x, n, out);
}

void avx512_scale_to_bf16(const float* x, int64_t n, float scale, uint16_t* out) {
  round_row_to_bf16<true>(x, n, out, scale);
}

}  // namespace dsv3::kernels::simd
