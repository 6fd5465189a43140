// The Q8 / Q4 matrix kernel for AVX-512 (F, BW, VL): one scale group of 32 columns is one vector
// of 32 int16 (the weight codes sign-extended, the token's int16 activation codes), multiplied
// and summed in pairs into 16 int32 lanes by vpmaddwd (exact: |sum| < 2^24). For every group g
// and every (row, token) of the register tile:
//   acc[r][t] = fma(float(vpmaddwd(w[r][g], x[t][g])), w_scale[r][g] * x_scale[t][g], acc[r][t])
// and out[t][r] = reduce_add(acc[r][t]) in the fixed order of simd/avx512.cpp. The sequence is
// the same whatever the tile, the panel, the batch or the thread: batch invariant.

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "kernels/simd/quant_kernels.h"
#include "tensor/block_quant.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")

namespace dsv3::kernels::simd {
namespace {

float reduce_add(__m512 v) {
  // Fixed pairwise order: (lo 256 + hi 256), then halves again, down to one lane.
  __m256 sum8 = _mm256_add_ps(_mm512_castps512_ps256(v),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(sum8), _mm256_extractf128_ps(sum8, 1));
  __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  __m128 sum1 = _mm_add_ss(sum2, _mm_movehdup_ps(sum2));
  return _mm_cvtss_f32(sum1);
}

// One float16 scale, broadcast.
__m512 broadcast_scale(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_set1_epi16(short(*p))); }

// Group g of every row of the tile (weights as int16, their scales) against every token.
template <int kRows, int kTokens>
inline void group_step(const QuantMatmulJob& job, int64_t token, int64_t g,
                       const __m512i (&weights)[kRows], const __m512 (&scales)[kRows],
                       __m512 (&acc)[kRows][kTokens]) {
#pragma GCC unroll 8
  for (int t = 0; t < kTokens; ++t) {
    const __m512i x = _mm512_loadu_si512(job.x_codes + (token + t) * job.x_stride + g * kQuantGroup);
    const __m512 x_scale = _mm512_set1_ps(job.x_scales[(token + t) * job.x_groups + g]);
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      const __m512 ints = _mm512_cvtepi32_ps(_mm512_madd_epi16(weights[i], x));
      acc[i][t] = _mm512_fmadd_ps(ints, _mm512_mul_ps(scales[i], x_scale), acc[i][t]);
    }
  }
}

// out[token + t][row + i] for i < kRows, t < kTokens.
template <DType kDType, int kRows, int kTokens>
void dot_tile(const QuantMatmulJob& job, int64_t row, int64_t token) {
  const WeightMatrix& w = *job.w;
  const int64_t row_bytes = w.row_bytes();
  const auto* first_row = static_cast<const uint8_t*>(w.data) + row * row_bytes;
  const uint16_t* first_scales = w.group_scale + row * w.scale_cols;
  // The rows of the tile after next come next in memory: prefetching them while this tile
  // streams keeps enough reads in flight for the few short streams of a tile.
  const uint8_t* ahead = first_row + 2 * kRows * row_bytes;
  const bool prefetch = row + 3 * kRows <= w.rows;

  __m512 acc[kRows][kTokens];
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t) acc[i][t] = _mm512_setzero_ps();

  if constexpr (kDType == DType::Q8) {
    for (int64_t g = 0; g * kQuantGroup < w.cols; ++g) {
      const int64_t c = g * kQuantGroup;
      const int64_t n = w.cols - c < kQuantGroup ? w.cols - c : kQuantGroup;
      const __mmask32 mask = n == 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1;
      __m512i weights[kRows];
      __m512 scales[kRows];
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
        if (prefetch && g % 2 == 0)
          _mm_prefetch(reinterpret_cast<const char*>(ahead + i * row_bytes + c), _MM_HINT_T1);
        weights[i] = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, first_row + i * row_bytes + c));
        scales[i] = broadcast_scale(first_scales + i * w.scale_cols + g);
      }
      group_step<kRows, kTokens>(job, token, g, weights, scales, acc);
    }
  } else {
    const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
    const __m512i zero_point = _mm512_set1_epi8(8);
    for (int64_t chunk = 0; chunk * kQ4ChunkCols < w.cols; ++chunk) {
      // Codes minus 8 as int8: low[i] holds the chunk's columns 0-63, high[i] columns 64-127.
      __m512i low[kRows], high[kRows];
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
        const uint8_t* p = first_row + i * row_bytes + chunk * kQ4ChunkBytes;
        if (prefetch) _mm_prefetch(reinterpret_cast<const char*>(ahead + i * row_bytes + chunk * kQ4ChunkBytes), _MM_HINT_T1);
        const __m512i packed = _mm512_loadu_si512(p);
        low[i] = _mm512_sub_epi8(_mm512_and_si512(packed, low_nibbles), zero_point);
        high[i] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles), zero_point);
      }
#pragma GCC unroll 4
      for (int part = 0; part < 4; ++part) {
        const int64_t g = chunk * 4 + part;
        if (g * kQuantGroup >= w.cols) break;
        __m512i weights[kRows];
        __m512 scales[kRows];
#pragma GCC unroll 8
        for (int i = 0; i < kRows; ++i) {
          const __m512i& codes = part < 2 ? low[i] : high[i];
          const __m256i half = part % 2 == 0 ? _mm512_castsi512_si256(codes) : _mm512_extracti64x4_epi64(codes, 1);
          weights[i] = _mm512_cvtepi8_epi16(half);
          scales[i] = broadcast_scale(first_scales + i * w.scale_cols + g);
        }
        group_step<kRows, kTokens>(job, token, g, weights, scales, acc);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < kTokens; ++t)
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) job.out[(token + t) * w.rows + row + i] = reduce_add(acc[i][t]);
}

// Rows [row_begin, row_end) for tokens [token, token + kTokens): tiles of kRows, then single rows.
template <DType kDType, int kTokens>
void dot_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end, int64_t token) {
  constexpr int kRows = kTokens <= 4 ? 4 : 2;  // kRows * kTokens accumulators <= 16
  int64_t r = row_begin;
  for (; r + kRows <= row_end; r += kRows) dot_tile<kDType, kRows, kTokens>(job, r, token);
  for (; r < row_end; ++r) dot_tile<kDType, 1, kTokens>(job, r, token);
}

constexpr int kMaxTileTokens = 8;

// Calls body(std::integral_constant<int, n>) for a run-time n in [1, kMax].
template <int kMax, class Body>
inline void with_token_count(int64_t n, Body&& body) {
  if constexpr (kMax >= 1) {
    if (n == kMax) return body(std::integral_constant<int, kMax>());
    return with_token_count<kMax - 1>(n, body);
  }
}

template <DType kDType>
void quant_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end) {
  const int64_t panel = job.n_tokens <= kMaxTileTokens ? row_end - row_begin : job.panel_rows;
  for (int64_t row0 = row_begin; row0 < row_end; row0 += panel) {
    const int64_t row1 = row_end - row0 < panel ? row_end : row0 + panel;
    for (int64_t token = 0; token < job.n_tokens; token += kMaxTileTokens) {
      const int64_t n = job.n_tokens - token < kMaxTileTokens ? job.n_tokens - token : kMaxTileTokens;
      with_token_count<kMaxTileTokens>(n, [&](auto tokens) {
        dot_rows<kDType, decltype(tokens)::value>(job, row0, row1, token);
      });
    }
  }
}

}  // namespace

void avx512_quant_rows(const QuantMatmulJob& job, int64_t row_begin, int64_t row_end) {
  if (job.w->dtype == DType::Q8) return quant_rows<DType::Q8>(job, row_begin, row_end);
  return quant_rows<DType::Q4>(job, row_begin, row_end);
}

}  // namespace dsv3::kernels::simd

#pragma GCC pop_options
