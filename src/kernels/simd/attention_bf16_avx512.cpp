// The bf16 attention products (kernels/attention_bf16.h) on vdpbf16ps (AVX512_BF16): each lane
// of an accumulator takes one score (16 keys per vector) or one output column (16 columns per
// vector), and each instruction adds one pair of the summed index to all 16:
//   scores:       acc[q][keys k..k+16) += query q's pair (d, d+1) . the keys' pair (d, d+1)
//   weighted sum: acc[q][cols c..c+16) += query q's probabilities of keys (s, s+1) . their values
// pairs in increasing order, one accumulator per output: the order batch invariance needs.
// Run only when cpu_has_avx512_bf16().

// GCC 12's AVX-512 headers: see avx512.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/attention_bf16.h"
#include "kernels/simd/isa_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")

#include "kernels/simd/round_bf16_avx512_impl.h"
#include "kernels/simd/token_tiles_impl.h"

namespace dsv3::kernels::simd {
namespace {

// A pair of bf16 values (two consecutive elements) broadcast to all 16 lanes.
__m512bh broadcast_pair(const uint16_t* p) {
  int32_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return (__m512bh)_mm512_set1_epi32(bits);
}

__mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xffff) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1u);
}

// Scores of kQueries queries against kBlocks blocks of 16 packed keys (from `keys`, the tile's
// first block), `keys_left` of them real from the tile's first key on.
template <int kQueries, int kBlocks>
void scores_tile(const uint16_t* queries, int64_t query_stride, const uint16_t* keys,
                 int64_t block_elements, int64_t pairs, float scale, int64_t keys_left,
                 float* scores, int64_t scores_stride) {
  __m512 acc[kQueries][kBlocks];
#pragma GCC unroll 8
  for (int q = 0; q < kQueries; ++q)
#pragma GCC unroll 4
    for (int j = 0; j < kBlocks; ++j) acc[q][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh key_pairs[kBlocks];
#pragma GCC unroll 4
    for (int j = 0; j < kBlocks; ++j)
      key_pairs[j] = (__m512bh)_mm512_loadu_si512(keys + j * block_elements + p * 32);
#pragma GCC unroll 8
    for (int q = 0; q < kQueries; ++q) {
      const __m512bh query_pair = broadcast_pair(queries + q * query_stride + 2 * p);
#pragma GCC unroll 4
      for (int j = 0; j < kBlocks; ++j)
        acc[q][j] = _mm512_dpbf16_ps(acc[q][j], key_pairs[j], query_pair);
    }
  }
  const __m512 scale_vector = _mm512_set1_ps(scale);
#pragma GCC unroll 8
  for (int q = 0; q < kQueries; ++q)
#pragma GCC unroll 4
    for (int j = 0; j < kBlocks; ++j)
      _mm512_mask_storeu_ps(scores + q * scores_stride + 16 * j, first_lanes(keys_left - 16 * j),
                            _mm512_mul_ps(acc[q][j], scale_vector));
}

// Register tiles: 8 queries x 3 blocks of 16 keys (24 accumulators).
constexpr int kScoreQueries = 8;
constexpr int kScoreBlocks = 3;

// kQueries queries x kVectors vectors of 16 output columns from column c (the last vector
// holding last_lanes of them), key pairs [pair_begin, pair_end) accumulated onto out.
template <int kQueries, int kVectors>
void weighted_sum_tile(const uint16_t* probs, int64_t probs_stride, const uint16_t* values,
                       int64_t dim, int64_t c, int last_lanes, int64_t pair_begin,
                       int64_t pair_end, float* out, int64_t out_stride) {
  __mmask16 masks[kVectors];
#pragma GCC unroll 4
  for (int j = 0; j < kVectors; ++j) masks[j] = j + 1 < kVectors ? 0xffff : first_lanes(last_lanes);
  __m512 acc[kQueries][kVectors];
#pragma GCC unroll 8
  for (int q = 0; q < kQueries; ++q)
#pragma GCC unroll 4
    for (int j = 0; j < kVectors; ++j)
      acc[q][j] = _mm512_maskz_loadu_ps(masks[j], out + q * out_stride + c + 16 * j);
  for (int64_t p = pair_begin; p < pair_end; ++p) {
    __m512bh value_pairs[kVectors];
    const uint16_t* row = values + (p * dim + c) * 2;
#pragma GCC unroll 4
    for (int j = 0; j < kVectors; ++j)
      value_pairs[j] = (__m512bh)_mm512_maskz_loadu_epi32(masks[j], row + 32 * j);
#pragma GCC unroll 8
    for (int q = 0; q < kQueries; ++q) {
      const __m512bh prob_pair = broadcast_pair(probs + q * probs_stride + 2 * p);
#pragma GCC unroll 4
      for (int j = 0; j < kVectors; ++j)
        acc[q][j] = _mm512_dpbf16_ps(acc[q][j], value_pairs[j], prob_pair);
    }
  }
#pragma GCC unroll 8
  for (int q = 0; q < kQueries; ++q)
#pragma GCC unroll 4
    for (int j = 0; j < kVectors; ++j)
      _mm512_mask_storeu_ps(out + q * out_stride + c + 16 * j, masks[j], acc[q][j]);
}

// Register tiles: 6 queries x 4 vectors of 16 columns (24 accumulators).
constexpr int kSumQueries = 6;
constexpr int kSumVectors = 4;

// Every column of kQueries queries, key pairs [pair_begin, pair_end).
template <int kQueries>
void weighted_sum_columns(const uint16_t* probs, int64_t probs_stride, const uint16_t* values,
                          int64_t dim, int64_t pair_begin, int64_t pair_end, float* out,
                          int64_t out_stride) {
  if (pair_begin >= pair_end) return;
  for (int64_t c = 0; c < dim; c += 16 * kSumVectors) {
    const int64_t vectors = std::min<int64_t>(kSumVectors, (dim - c + 15) / 16);
    const int last_lanes = int(dim - c - (vectors - 1) * 16);
    with_token_count<kSumVectors>(vectors, [&](auto count) {
      weighted_sum_tile<kQueries, decltype(count)::value>(probs, probs_stride, values, dim, c,
                                                           std::min(last_lanes, 16), pair_begin,
                                                           pair_end, out, out_stride);
    });
  }
}

// Key pairs per block of the weighted sum: the block's packed values (128 pairs x 64 columns x
// 4 bytes = 32 KB at 64 columns) stay in L1 while every query passes over them, and each tile's
// accumulators are loaded and stored once per 128 pairs. BM_AttentionWeightedSumBf16 (16 heads x
// 32 queries x 512 keys x 64, 2 threads): 670 GFLOP/s with blocks of 32 pairs, 786 with 64, 894
// with 128, 884 with 256.
constexpr int64_t kSumPairBlock = 128;

// The 16 x 16 matrix of 32-bit elements in rows[0..16) transposed in place.
void transpose16x16_epi32(__m512i (&rows)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(rows[i], rows[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(rows[i], rows[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    rows[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    rows[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    rows[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    rows[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // rows[4b + k] now holds, in each 128-bit block j, element k of rows 4b..4b+3's block j.
  for (int i = 0; i < 16; i += 8)
    for (int k = 0; k < 4; ++k) {
      t[i + k] = _mm512_shuffle_i32x4(rows[i + k], rows[i + 4 + k], 0x88);
      t[i + 4 + k] = _mm512_shuffle_i32x4(rows[i + k], rows[i + 4 + k], 0xdd);
    }
  for (int k = 0; k < 8; ++k) {
    rows[k] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0x88);
    rows[8 + k] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0xdd);
  }
}

}  // namespace

void avx512_pack_keys_bf16(const float* keys, int64_t key_stride, int64_t first_dim,
                           const float* rest, int64_t rest_stride, int64_t n_keys, int64_t dim,
                           uint16_t* packed, uint16_t* scratch) {
  const int64_t pairs = (dim + 1) / 2;
  const int64_t row_elements = (pairs + 15) / 16 * 32;  // a key's bf16 row in the scratch
  auto round_part = [](const float* x, int64_t n, uint16_t* out) {
    int64_t c = 0;
    for (; c + 16 <= n; c += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), round_to_bf16(_mm512_loadu_ps(x + c)));
    if (c < n) {
      const __mmask16 mask = first_lanes(n - c);
      _mm256_mask_storeu_epi16(out + c, mask, round_to_bf16(_mm512_maskz_loadu_ps(mask, x + c)));
    }
  };
  for (int64_t block = 0; block * kBf16KeyBlock < n_keys; ++block) {
    // The block's 16 keys as bf16 rows, zero past dim (and all zero past n_keys).
    for (int64_t i = 0; i < kBf16KeyBlock; ++i) {
      uint16_t* row = scratch + i * row_elements;
      std::fill_n(row, row_elements, uint16_t(0));
      const int64_t s = block * kBf16KeyBlock + i;
      if (s >= n_keys) continue;
      round_part(keys + s * key_stride, first_dim, row);
      round_part(rest + s * rest_stride, dim - first_dim, row + first_dim);
    }
    // Per 16 pairs: the 16 x 16 (key, pair) words transposed to (pair, key).
    uint16_t* out = packed + block * pairs * kBf16KeyBlock * 2;
    for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
      __m512i rows[16];
      for (int i = 0; i < 16; ++i) rows[i] = _mm512_loadu_si512(scratch + i * row_elements + 2 * p0);
      transpose16x16_epi32(rows);
      for (int64_t p = p0; p < std::min(pairs, p0 + 16); ++p)
        _mm512_storeu_si512(out + p * kBf16KeyBlock * 2, rows[p - p0]);
    }
  }
}

void avx512_pack_values_bf16(const float* values, int64_t value_stride, int64_t n_keys,
                             int64_t dim, uint16_t* packed) {
  for (int64_t s = 0; s < n_keys; s += 2) {
    const float* first = values + s * value_stride;
    const float* second = first + value_stride;
    const bool has_second = s + 1 < n_keys;
    uint16_t* out = packed + s / 2 * dim * 2;
    for (int64_t c = 0; c < dim; c += 16) {
      const __mmask16 mask = first_lanes(dim - c);
      const __m512i low = _mm512_cvtepu16_epi32(round_to_bf16(_mm512_maskz_loadu_ps(mask, first + c)));
      const __m512i high =
          has_second ? _mm512_cvtepu16_epi32(round_to_bf16(_mm512_maskz_loadu_ps(mask, second + c)))
                     : _mm512_setzero_si512();
      _mm512_mask_storeu_epi32(out + 2 * c, mask, _mm512_or_si512(low, _mm512_slli_epi32(high, 16)));
    }
  }
}

void avx512_attention_scores_bf16(const uint16_t* queries, int64_t query_stride,
                                  int64_t n_queries, const uint16_t* packed_keys, int64_t n_keys,
                                  int64_t dim, float scale, float* scores,
                                  int64_t scores_stride) {
  const int64_t pairs = (dim + 1) / 2;
  const int64_t block_elements = pairs * kBf16KeyBlock * 2;
  const int64_t blocks = (n_keys + kBf16KeyBlock - 1) / kBf16KeyBlock;
  // Key blocks outermost: a tile's blocks stay in L1 while every query tile passes over them.
  for (int64_t b0 = 0; b0 < blocks; b0 += kScoreBlocks) {
    const int64_t n_blocks = std::min<int64_t>(kScoreBlocks, blocks - b0);
    const int64_t first_key = b0 * kBf16KeyBlock;
    for (int64_t q0 = 0; q0 < n_queries; q0 += kScoreQueries) {
      const int64_t n = std::min<int64_t>(kScoreQueries, n_queries - q0);
      with_token_count<kScoreQueries>(n, [&](auto query_count) {
        with_token_count<kScoreBlocks>(n_blocks, [&](auto block_count) {
          scores_tile<decltype(query_count)::value, decltype(block_count)::value>(
              queries + q0 * query_stride, query_stride, packed_keys + b0 * block_elements,
              block_elements, pairs, scale, n_keys - first_key,
              scores + q0 * scores_stride + first_key, scores_stride);
        });
      });
    }
  }
}

void avx512_attention_weighted_sum_bf16(const uint16_t* probs, int64_t probs_stride,
                                        int64_t n_queries, const int64_t* key_counts,
                                        const uint16_t* packed_values, int64_t dim, float* out,
                                        int64_t out_stride) {
  int64_t max_pairs = 0;
  for (int64_t q = 0; q < n_queries; ++q) {
    std::fill_n(out + q * out_stride, dim, 0.0f);
    max_pairs = std::max(max_pairs, (key_counts[q] + 1) / 2);
  }
  // Pair blocks outermost; within a block a tile of queries shares the pairs all of them have,
  // then each query takes its own rest.
  for (int64_t p0 = 0; p0 < max_pairs; p0 += kSumPairBlock) {
    const int64_t p1 = std::min(max_pairs, p0 + kSumPairBlock);
    for (int64_t q0 = 0; q0 < n_queries; q0 += kSumQueries) {
      const int64_t n = std::min<int64_t>(kSumQueries, n_queries - q0);
      int64_t shared_end = p1;
      for (int64_t q = q0; q < q0 + n; ++q) shared_end = std::min(shared_end, (key_counts[q] + 1) / 2);
      shared_end = std::max(shared_end, p0);
      with_token_count<kSumQueries>(n, [&](auto query_count) {
        weighted_sum_columns<decltype(query_count)::value>(probs + q0 * probs_stride,
                                                           probs_stride, packed_values, dim, p0,
                                                           shared_end, out + q0 * out_stride,
                                                           out_stride);
      });
      for (int64_t q = q0; q < q0 + n; ++q) {
        const int64_t own_end = std::min(p1, (key_counts[q] + 1) / 2);
        weighted_sum_columns<1>(probs + q * probs_stride, probs_stride, packed_values, dim,
                                shared_end, own_end, out + q * out_stride, out_stride);
      }
    }
  }
}

}  // namespace dsv3::kernels::simd

#pragma GCC pop_options
