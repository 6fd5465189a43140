// The products of kernels/attention_bf16.h's *_bf16_rows on vdpbf16ps (AVX512_BF16), over keys
// and values stored as bf16 rows (a bf16 latent cache).
//
// Scores: as many queries as lanes. Each
// lane of an accumulator holds one query's score of one key; each instruction adds the query's
// pair of dimensions (2i, 2i + 1) times the key's, that pair of the key broadcast from its row:
//   acc[v][r] lane q += queries[16 v + q] pair i . keys[r] pair i,   i = 0, 1, ... in order
// one accumulator per score, whatever the tile or the other queries: the order batch
// invariance needs. The same tiling as the float kernel (simd/attention_impl.h), at two
// products per lane and instruction.
//
// Weighted sum: each lane holds one output column of one query; each instruction adds the
// query's probabilities of keys (2i, 2i + 1) times those two rows' values of the column, pairs
// in order, one accumulator per output. The two rows are interleaved into pairs as they are
// loaded (unpacklo/unpackhi), which permutes the columns among the lanes; the permutation is
// undone once, at the store.
//
// Run only when cpu_has_avx512_bf16().

// GCC 12's AVX-512 headers: see avx512.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/simd/isa_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")

#include "kernels/simd/token_tiles_impl.h"

namespace dsv3::kernels::simd {
namespace {

// Key pair i of a row of `dim` values broadcast to all 16 lanes; the last pair of an odd row
// is its last value and a zero (the row ends there).
__m512bh broadcast_key_pair(const uint16_t* row, int64_t i, int64_t dim) {
  uint32_t bits;
  if (2 * i + 1 < dim)
    std::memcpy(&bits, row + 2 * i, sizeof bits);
  else
    bits = row[2 * i];
  return (__m512bh)_mm512_set1_epi32(int32_t(bits));
}

// Scores of up to 16 kVectors queries against kRows keys. queries_by_pair: pair i of lane q of
// vector v at [(i kVectors + v) 32 + 2 q], zero past the real queries and past dim.
template <int kRows, int kVectors>
void rows_scores_tile(const uint16_t* queries_by_pair, const uint16_t* keys, int64_t key_stride,
                      int64_t dim, float scale, int n_queries, float* scores,
                      int64_t scores_stride) {
  __m512 acc[kVectors][kRows];
#pragma GCC unroll 2
  for (int v = 0; v < kVectors; ++v)
#pragma GCC unroll 24
    for (int r = 0; r < kRows; ++r) acc[v][r] = _mm512_setzero_ps();
  const int64_t pairs = (dim + 1) / 2, whole_pairs = dim / 2;
  // Per 64-byte line of the rows, a prefetch into L2 of the same line of the next tile's rows,
  // as the float kernel does.
  const uint16_t* next_keys = keys + kRows * key_stride;
  for (int64_t i0 = 0; i0 < pairs; i0 += 16) {
#pragma GCC unroll 24
    for (int r = 0; r < kRows; ++r) _mm_prefetch(next_keys + r * key_stride + 2 * i0, _MM_HINT_T1);
    const int64_t i1 = pairs - i0 < 16 ? pairs : i0 + 16;
    for (int64_t i = i0; i < i1; ++i) {
      __m512bh query_pairs[kVectors];
#pragma GCC unroll 2
      for (int v = 0; v < kVectors; ++v)
        query_pairs[v] = (__m512bh)_mm512_loadu_si512(queries_by_pair + (i * kVectors + v) * 32);
      if (i < whole_pairs) {
#pragma GCC unroll 24
        for (int r = 0; r < kRows; ++r) {
          int32_t bits;
          std::memcpy(&bits, keys + r * key_stride + 2 * i, sizeof bits);
          const __m512bh key_pair = (__m512bh)_mm512_set1_epi32(bits);
#pragma GCC unroll 2
          for (int v = 0; v < kVectors; ++v)
            acc[v][r] = _mm512_dpbf16_ps(acc[v][r], query_pairs[v], key_pair);
        }
      } else {
#pragma GCC unroll 24
        for (int r = 0; r < kRows; ++r) {
          const __m512bh key_pair = broadcast_key_pair(keys + r * key_stride, i, dim);
#pragma GCC unroll 2
          for (int v = 0; v < kVectors; ++v)
            acc[v][r] = _mm512_dpbf16_ps(acc[v][r], query_pairs[v], key_pair);
        }
      }
    }
  }
  alignas(64) float tile[kRows][16];
  const __m512 scale_vector = _mm512_set1_ps(scale);
#pragma GCC unroll 2
  for (int v = 0; v < kVectors; ++v) {
#pragma GCC unroll 24
    for (int r = 0; r < kRows; ++r)
      _mm512_store_ps(tile[r], _mm512_mul_ps(acc[v][r], scale_vector));
    const int n = n_queries - v * 16 < 16 ? n_queries - v * 16 : 16;
    float* out = scores + v * 16 * scores_stride;
    for (int q = 0; q < n; ++q)
#pragma GCC unroll 24
      for (int r = 0; r < kRows; ++r) out[q * scores_stride + r] = tile[r][q];
  }
}

// Keys per tile: kVectors x kRows accumulators, the query pairs and a broadcast fit the 32
// registers.
constexpr int kRowsPerTile = 12;

template <int kVectors>
void rows_scores_block(const uint16_t* queries_by_pair, const uint16_t* keys, int64_t key_stride,
                       int64_t n_keys, int64_t dim, float scale, int n, float* out,
                       int64_t scores_stride) {
  int64_t s = 0;
  for (; s + kRowsPerTile <= n_keys; s += kRowsPerTile)
    rows_scores_tile<kRowsPerTile, kVectors>(queries_by_pair, keys + s * key_stride, key_stride,
                                             dim, scale, n, out + s, scores_stride);
  if (s < n_keys) {
    with_token_count<kRowsPerTile - 1>(n_keys - s, [&](auto rows) {
      rows_scores_tile<decltype(rows)::value, kVectors>(queries_by_pair, keys + s * key_stride,
                                                        key_stride, dim, scale, n, out + s,
                                                        scores_stride);
    });
  }
}

__mmask32 column_mask(int64_t count) {
  return count >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << count) - 1u);
}

// The weighted sum interleaves two value rows s, s + 1 (32 columns each, `columns` of them
// real) into the pairs vdpbf16ps multiplies by a query's probabilities of s and s + 1: per
// 128-bit lane, unpacklo holds columns 0-3 and unpackhi columns 4-7 of that lane's 8.
struct ColumnPairs {
  __m512bh low, high;
};

ColumnPairs column_pairs(const uint16_t* row, const uint16_t* next_row, __mmask32 columns) {
  const __m512i a = _mm512_maskz_loadu_epi16(columns, row);
  const __m512i b = next_row ? _mm512_maskz_loadu_epi16(columns, next_row) : _mm512_setzero_si512();
  return {(__m512bh)_mm512_unpacklo_epi16(a, b), (__m512bh)_mm512_unpackhi_epi16(a, b)};
}

// The accumulators' lanes (low: columns 0-3, 8-11, 16-19, 24-27; high: 4-7, 12-15, 20-23,
// 28-31) picked into columns 0-15 and 16-31 in order (permutex2var indices, high from 16 on).
alignas(64) constexpr int32_t kFirstColumns[16] = {0, 1, 2, 3, 16, 17, 18, 19,
                                                   4, 5, 6, 7, 20, 21, 22, 23};
alignas(64) constexpr int32_t kSecondColumns[16] = {8,  9,  10, 11, 24, 25, 26, 27,
                                                    12, 13, 14, 15, 28, 29, 30, 31};

// kQueries queries' sums of 32 columns from `c` (`columns` of them real) over key pairs
// [0, pairs), written to out (overwritten). probs: bf16 rows, zero past each query's count.
template <int kQueries>
void rows_weighted_sum_tile(const uint16_t* probs, int64_t probs_stride, const uint16_t* values,
                            int64_t value_stride, int64_t n_keys, int64_t c, int64_t columns,
                            float* out, int64_t out_stride) {
  __m512 low[kQueries], high[kQueries];
#pragma GCC unroll 8
  for (int q = 0; q < kQueries; ++q) low[q] = high[q] = _mm512_setzero_ps();
  const __mmask32 mask = column_mask(columns);
  const int64_t pairs = (n_keys + 1) / 2;
  const uint16_t* row = values + c;
  for (int64_t i = 0; i < pairs; ++i, row += 2 * value_stride) {
    const ColumnPairs value_pairs =
        column_pairs(row, 2 * i + 1 < n_keys ? row + value_stride : nullptr, mask);
#pragma GCC unroll 8
    for (int q = 0; q < kQueries; ++q) {
      int32_t bits;
      std::memcpy(&bits, probs + q * probs_stride + 2 * i, sizeof bits);
      const __m512bh prob_pair = (__m512bh)_mm512_set1_epi32(bits);
      low[q] = _mm512_dpbf16_ps(low[q], value_pairs.low, prob_pair);
      high[q] = _mm512_dpbf16_ps(high[q], value_pairs.high, prob_pair);
    }
  }
  const __mmask16 first = __mmask16(columns >= 16 ? 0xffff : (1u << columns) - 1u);
  const __mmask16 second = __mmask16(columns <= 16   ? 0
                                     : columns >= 32 ? 0xffff
                                                     : (1u << (columns - 16)) - 1u);
  const __m512i first_columns = _mm512_load_si512(kFirstColumns);
  const __m512i second_columns = _mm512_load_si512(kSecondColumns);
#pragma GCC unroll 8
  for (int q = 0; q < kQueries; ++q) {
    float* o = out + q * out_stride + c;
    _mm512_mask_storeu_ps(o, first, _mm512_permutex2var_ps(low[q], first_columns, high[q]));
    _mm512_mask_storeu_ps(o + 16, second, _mm512_permutex2var_ps(low[q], second_columns, high[q]));
  }
}

// Queries per tile of the weighted sum: 2 x 8 accumulators, the row pairs and a broadcast.
constexpr int kSumQueries = 8;

}  // namespace

void avx512_attention_weighted_sum_bf16_rows(const uint16_t* probs, int64_t probs_stride,
                                             int64_t n_queries, const int64_t* key_counts,
                                             const uint16_t* values, int64_t value_stride,
                                             int64_t dim, float* out, int64_t out_stride) {
  for (int64_t q0 = 0; q0 < n_queries; q0 += kSumQueries) {
    const int64_t n = n_queries - q0 < kSumQueries ? n_queries - q0 : kSumQueries;
    int64_t n_keys = 0;  // the tile's longest count: the others' probabilities are zero there
    for (int64_t q = q0; q < q0 + n; ++q) n_keys = key_counts[q] > n_keys ? key_counts[q] : n_keys;
    for (int64_t c = 0; c < dim; c += 32) {
      with_token_count<kSumQueries>(n, [&](auto count) {
        rows_weighted_sum_tile<decltype(count)::value>(
            probs + q0 * probs_stride, probs_stride, values, value_stride, n_keys, c,
            dim - c < 32 ? dim - c : 32, out + q0 * out_stride, out_stride);
      });
    }
  }
}

void avx512_attention_scores_bf16_rows(const uint16_t* queries, int64_t query_stride,
                                       int64_t n_queries, const uint16_t* keys, int64_t key_stride,
                                       int64_t n_keys, int64_t dim, float scale, float* scores,
                                       int64_t scores_stride) {
  constexpr int kMaxVectors = 2;
  const int64_t pairs = (dim + 1) / 2;
  uint16_t* queries_by_pair =
      reinterpret_cast<uint16_t*>(thread_scratch_floats(pairs * kMaxVectors * 16));
  for (int64_t q0 = 0; q0 < n_queries;) {
    const int vectors = n_queries - q0 >= kMaxVectors * 16 ? kMaxVectors : 1;
    const int width = vectors * 16;
    const int n = n_queries - q0 < width ? int(n_queries - q0) : width;
    for (int64_t i = 0; i < pairs; ++i)
      for (int q = 0; q < width; ++q)
        for (int half = 0; half < 2; ++half) {
          const int64_t d = 2 * i + half;
          queries_by_pair[(i * width + q) * 2 + half] =
              q < n && d < dim ? queries[(q0 + q) * query_stride + d] : uint16_t(0);
        }
    float* out = scores + q0 * scores_stride;
    if (vectors == 2) {
      rows_scores_block<2>(queries_by_pair, keys, key_stride, n_keys, dim, scale, n, out,
                           scores_stride);
    } else {
      rows_scores_block<1>(queries_by_pair, keys, key_stride, n_keys, dim, scale, n, out,
                           scores_stride);
    }
    q0 += n;
  }
}

}  // namespace dsv3::kernels::simd

#pragma GCC pop_options
