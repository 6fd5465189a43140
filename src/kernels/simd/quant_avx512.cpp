// The Q8 / Q4 matrix kernels for AVX-512 (F, BW, VL; the int8-code kernels also VNNI). Each
// token's activations come as int16 or int8 codes per group of 32 columns
// (kernels/quant_matmul.cpp); every group's integer dot product with the weight codes is exact,
// then scaled and added in float:
//   Q8, int16 codes: one group is one vector of 32 int16 (weight codes sign-extended), vpmaddwd
//       sums pairs into 16 int32 lanes (|sum| < 2^24), and for every (row r, token t) of the
//       register tile acc[r][t] = fma(float(ints), w_scale[r][g] * x_scale[t][g], acc[r][t]).
//   Q4, and Q8 with int8 codes: 64 columns (two groups) at a time: the weights made unsigned
//       (Q4 nibbles q + 8, Q8 codes with the sign bit flipped, q + 128) times the int8
//       activation codes: ints = vpdpbusd(offsets, w, x) (lanes 0-7 one group, 8-15 the next,
//       the offsets take the 8 or 128 back; |ints| <= 32 * 255 * 127 < 2^24), then
//       acc[r][t] = fma(float(ints), w_scales[r][s] * x_scales[t][s], acc[r][t]) by lanes.
// out[t][r] = reduce_add_avx512(acc[r][t]) (simd/reduce_avx512_impl.h). The sequence is the
// same whatever the tile, the panel, the batch or the thread: batch invariant.

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "kernels/simd/quant_kernels.h"
#include "tensor/block_quant.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")

#include "kernels/simd/reduce_avx512_impl.h"
#include "kernels/simd/token_tiles_impl.h"

namespace dsv3::kernels::simd {
namespace {

// Where the rows of a register tile start: codes and scales, and the codes of the tile after
// next, which are prefetched while this tile streams (enough reads in flight for the few short
// streams of a tile).
struct TileRows {
  TileRows(const WeightMatrix& w, int64_t row, int tile_rows)
      : row_bytes(w.row_bytes()),
        first(static_cast<const uint8_t*>(w.data) + row * row_bytes),
        ahead(first + 2 * tile_rows * row_bytes),
        first_scales(w.group_scale + row * w.scale_cols),
        prefetch(row + 3 * tile_rows <= w.rows) {}
  int64_t row_bytes;
  const uint8_t* first;
  const uint8_t* ahead;
  const uint16_t* first_scales;
  bool prefetch;  // whether the tile after next exists
};

template <int kRows, int kTokens>
inline void zero(__m512 (&acc)[kRows][kTokens]) {
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t) acc[i][t] = _mm512_setzero_ps();
}

// out[token + t][row + i] = the sum of acc[i][t]'s lanes.
template <int kRows, int kTokens>
inline void store_outputs(const QuantMatmulJob& job, int64_t row, int64_t token,
                          const __m512 (&acc)[kRows][kTokens]) {
#pragma GCC unroll 8
  for (int t = 0; t < kTokens; ++t)
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i)
      job.out[(token + t) * job.w->rows + row + i] = reduce_add_avx512(acc[i][t]);
}

// One token: the weight scales of groups [g, g + 16) of every row of the tile, converted and
// multiplied by the token's in one vector per row (x_groups >= scale_cols: the mask keeps both
// loads inside their rows).
template <int kRows>
inline void token_block_scales(const QuantMatmulJob& job, const TileRows& rows, int64_t token,
                               int64_t g, __m512 (&block_scales)[kRows]) {
  const WeightMatrix& w = *job.w;
  const int64_t left = w.scale_cols - g;
  const __mmask16 mask = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
  const __m512 x_scales = _mm512_maskz_loadu_ps(mask, job.x_scales + token * job.x_groups + g);
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i) {
    block_scales[i] = _mm512_mul_ps(
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, rows.first_scales + i * w.scale_cols + g)),
        x_scales);
  }
}

// Group g of every row of the tile (weights as int16, their scales) against every token.
// kScaledByToken: scales[i] already holds the weight scale times the token's (one-token tiles,
// see Q8Tile::dot: the same product of the same two floats, so the same bits).
template <int kRows, int kTokens, bool kScaledByToken = false>
inline void group_step(const QuantMatmulJob& job, int64_t token, int64_t g,
                       const __m512i (&weights)[kRows], const __m512 (&scales)[kRows],
                       __m512 (&acc)[kRows][kTokens]) {
  static_assert(!kScaledByToken || kTokens == 1, "token scales fold in for one token only");
#pragma GCC unroll 8
  for (int t = 0; t < kTokens; ++t) {
    const __m512i x = _mm512_loadu_si512(job.x_codes + (token + t) * job.x_stride + g * kQuantGroup);
    const __m512 x_scale = _mm512_set1_ps(job.x_scales[(token + t) * job.x_groups + g]);
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      const __m512 ints = _mm512_cvtepi32_ps(_mm512_madd_epi16(weights[i], x));
      if constexpr (kScaledByToken) {
        acc[i][t] = _mm512_fmadd_ps(ints, scales[i], acc[i][t]);
      } else {
        acc[i][t] = _mm512_fmadd_ps(ints, _mm512_mul_ps(scales[i], x_scale), acc[i][t]);
      }
    }
  }
}

// Q8: out[token + t][row + i] for i < kRows, t < kTokens.
struct Q8Tile {
  template <int kRows, int kTokens>
  static void dot(const QuantMatmulJob& job, int64_t row, int64_t token);
};

template <int kRows, int kTokens>
void Q8Tile::dot(const QuantMatmulJob& job, int64_t row, int64_t token) {
  const WeightMatrix& w = *job.w;
  const TileRows rows(w, row, kRows);
  __m512 acc[kRows][kTokens];
  zero(acc);

  {
    // One token: the weight scales of 16 groups at a time converted and multiplied by the
    // token's in one vector each, then broadcast per group (instead of a float16 broadcast and
    // a multiply per group).
    alignas(64) float token_scaled[kRows][16];
    for (int64_t g = 0; g * kQuantGroup < w.cols; ++g) {
      const int64_t c = g * kQuantGroup;
      const int64_t n = w.cols - c < kQuantGroup ? w.cols - c : kQuantGroup;
      const __mmask32 mask = n == 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1;
      if constexpr (kTokens == 1) {
        if (g % 16 == 0) {
          __m512 block_scales[kRows];
          token_block_scales(job, rows, token, g, block_scales);
#pragma GCC unroll 8
          for (int i = 0; i < kRows; ++i) _mm512_store_ps(token_scaled[i], block_scales[i]);
        }
      }
      __m512i weights[kRows];
      __m512 scales[kRows];
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
        if (rows.prefetch && g % 2 == 0)
          _mm_prefetch(reinterpret_cast<const char*>(rows.ahead + i * rows.row_bytes + c), _MM_HINT_T1);
        weights[i] = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, rows.first + i * rows.row_bytes + c));
        if constexpr (kTokens == 1) {
          scales[i] = _mm512_set1_ps(token_scaled[i][g % 16]);
        } else {
          scales[i] = broadcast_f16(rows.first_scales + i * w.scale_cols + g);
        }
      }
      group_step<kRows, kTokens, kTokens == 1>(job, token, g, weights, scales, acc);
    }
  }
  store_outputs(job, row, token, acc);
}

// Rows [row_begin, row_end) for tokens [token, token + kTokens): tiles of kRows, then single rows.
template <class Tile, int kTokens>
void dot_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end, int64_t token) {
  constexpr int kRows = kTokens <= 4 ? 4 : 2;  // kRows * kTokens accumulators <= 16
  int64_t r = row_begin;
  for (; r + kRows <= row_end; r += kRows) Tile::template dot<kRows, kTokens>(job, r, token);
  for (; r < row_end; ++r) Tile::template dot<1, kTokens>(job, r, token);
}

constexpr int kMaxTileTokens = 8;

template <class Tile>
void quant_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end) {
  const int64_t panel = job.n_tokens <= kMaxTileTokens ? row_end - row_begin : job.panel_rows;
  for (int64_t row0 = row_begin; row0 < row_end; row0 += panel) {
    const int64_t row1 = row_end - row0 < panel ? row_end : row0 + panel;
    for_token_tiles<kMaxTileTokens>(job.n_tokens, [&](int64_t, int64_t token, auto tokens) {
      dot_rows<Tile, decltype(tokens)::value>(job, row0, row1, token);
    });
  }
}

}  // namespace

void avx512_quant_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end) {
  quant_rows<Q8Tile>(job, row_begin, row_end);
}

}  // namespace dsv3::kernels::simd

#pragma GCC pop_options

// The int8-code kernels need VNNI: compiled in their own target region, so the int16 Q8 kernel
// above never contains a VNNI instruction.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")

namespace dsv3::kernels::simd {
namespace {

// kStepLanes[j]: lanes 0-7 = 2j, lanes 8-15 = 2j + 1: the vpermps index that spreads the scales
// of the two groups of step j of a block of 16 groups over the step's lanes.
alignas(64) constexpr int32_t kStepLanes[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

// The scales of step j (0-7) of a block of 16 groups, spread as kStepLanes[j].
inline __m512 step_scales(__m512 block_scales, int64_t j) {
  return _mm512_permutexvar_ps(_mm512_load_si512(kStepLanes[j]), block_scales);
}

// Step s (64 columns, two groups) of every row of the tile (unsigned weights) against every
// token: ints = vpdpbusd(offsets, weights, codes). kScaledByToken: scales[i] already holds the
// weight scales times the token's (one-token tiles: the same products of the same two floats,
// so the same bits, one multiply fewer per step).
template <int kRows, int kTokens, bool kScaledByToken = false>
inline void byte_step(const QuantMatmulJob& job, int64_t token, int64_t s,
                      const __m512i (&weights)[kRows], const __m512 (&scales)[kRows],
                      __m512 (&acc)[kRows][kTokens]) {
  static_assert(!kScaledByToken || kTokens == 1, "token scales fold in for one token only");
  const int64_t steps = job.x_stride / 64;
#pragma GCC unroll 8
  for (int t = 0; t < kTokens; ++t) {
    const int64_t lane_index = ((token + t) * steps + s) * 16;
    const __m512i codes = _mm512_loadu_si512(job.x_bytes + (token + t) * job.x_stride + s * 64);
    const __m512i offsets = _mm512_loadu_si512(job.x_lane_offsets + lane_index);
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      const __m512 ints = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(offsets, weights[i], codes));
      if constexpr (kScaledByToken) {
        acc[i][t] = _mm512_fmadd_ps(ints, scales[i], acc[i][t]);
      } else {
        const __m512 x_scales = _mm512_loadu_ps(job.x_lane_scales + lane_index);
        acc[i][t] = _mm512_fmadd_ps(ints, _mm512_mul_ps(scales[i], x_scales), acc[i][t]);
      }
    }
  }
}

struct Q4Tile {
  template <int kRows, int kTokens>
  static void dot(const QuantMatmulJob& job, int64_t row, int64_t token) {
    const WeightMatrix& w = *job.w;
    const TileRows rows(w, row, kRows);
    __m512 acc[kRows][kTokens];
    zero(acc);
    const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
    __m512 block_scales[kRows];  // one token: token_block_scales of 4 chunks, spread per step
    for (int64_t chunk = 0; chunk * kQ4ChunkCols < w.cols; ++chunk) {
      __m512i low[kRows], high[kRows];
      __m512 low_scales[kRows], high_scales[kRows];
      if constexpr (kTokens == 1) {
        if (chunk % 4 == 0) token_block_scales(job, rows, token, 4 * chunk, block_scales);
      }
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
        const int64_t offset = i * rows.row_bytes + chunk * kQ4ChunkBytes;
        if (rows.prefetch) _mm_prefetch(reinterpret_cast<const char*>(rows.ahead + offset), _MM_HINT_T1);
        const __m512i packed = _mm512_loadu_si512(rows.first + offset);
        low[i] = _mm512_and_si512(packed, low_nibbles);
        high[i] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles);
        if constexpr (kTokens == 1) {
          low_scales[i] = step_scales(block_scales[i], 2 * (chunk % 4));
          high_scales[i] = step_scales(block_scales[i], 2 * (chunk % 4) + 1);
        } else {
          const int64_t n_scales = w.scale_cols - 4 * chunk < 4 ? w.scale_cols - 4 * chunk : 4;
          const __m512 chunk_scales = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_maskz_loadu_epi16(
              __mmask8((1u << n_scales) - 1u), rows.first_scales + i * w.scale_cols + 4 * chunk)));
          low_scales[i] = step_scales(chunk_scales, 0);
          high_scales[i] = step_scales(chunk_scales, 1);
        }
      }
      byte_step<kRows, kTokens, kTokens == 1>(job, token, 2 * chunk, low, low_scales, acc);
      byte_step<kRows, kTokens, kTokens == 1>(job, token, 2 * chunk + 1, high, high_scales, acc);
    }
    store_outputs(job, row, token, acc);
  }
};

// Q8 with int8 activation codes: a step is 64 consecutive stored codes of a row, their sign
// bits flipped (q + 128), the last step of a row masked (its weights then enter as 128, against
// activation codes that are 0 past cols).
struct Q8ByteTile {
  template <int kRows, int kTokens>
  static void dot(const QuantMatmulJob& job, int64_t row, int64_t token) {
    const WeightMatrix& w = *job.w;
    const TileRows rows(w, row, kRows);
    __m512 acc[kRows][kTokens];
    zero(acc);
    const __m512i sign_bits = _mm512_set1_epi8(char(0x80));
    __m512 block_scales[kRows];  // one token: token_block_scales of 8 steps, spread per step
    for (int64_t s = 0; s * 64 < w.cols; ++s) {
      const int64_t c = s * 64;
      const __mmask64 mask = w.cols - c >= 64 ? ~__mmask64(0) : (__mmask64(1) << (w.cols - c)) - 1;
      if constexpr (kTokens == 1) {
        if (s % 8 == 0) token_block_scales(job, rows, token, 2 * s, block_scales);
      }
      __m512i weights[kRows];
      __m512 scales[kRows];
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
        const int64_t offset = i * rows.row_bytes + c;
        if (rows.prefetch) _mm_prefetch(reinterpret_cast<const char*>(rows.ahead + offset), _MM_HINT_T1);
        weights[i] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, rows.first + offset), sign_bits);
        if constexpr (kTokens == 1) {
          scales[i] = step_scales(block_scales[i], s % 8);
        } else {
          const int64_t n_scales = w.scale_cols - 2 * s < 2 ? 1 : 2;
          const __m512 step_pair = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_maskz_loadu_epi16(
              __mmask8((1u << n_scales) - 1u), rows.first_scales + i * w.scale_cols + 2 * s)));
          scales[i] = step_scales(step_pair, 0);
        }
      }
      byte_step<kRows, kTokens, kTokens == 1>(job, token, s, weights, scales, acc);
    }
    store_outputs(job, row, token, acc);
  }
};

}  // namespace

void avx512_vnni_q4_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end) {
  quant_rows<Q4Tile>(job, row_begin, row_end);
}

void avx512_vnni_q8_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end) {
  quant_rows<Q8ByteTile>(job, row_begin, row_end);
}

}  // namespace dsv3::kernels::simd

#pragma GCC pop_options
