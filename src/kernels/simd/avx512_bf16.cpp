// The kernel of kernels::matmul_bf16_activations: BF16 weights times activations rounded to
// bf16, with vdpbf16ps (AVX512_BF16: 32 multiply-adds per instruction, twice the float FMA
// rate), accumulating in float. Run only when cpu_has_avx512_bf16().
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

#include <cstdint>
#include <type_traits>

#include "kernels/simd/isa_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")

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

// The same fixed tree as Avx512::reduce_add (lo 256 + hi 256, then halves again).
float reduce_add(__m512 v) {
  __m256 sum8 = _mm256_add_ps(_mm512_castps512_ps256(v),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(sum8), _mm256_extractf128_ps(sum8, 1));
  __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  __m128 sum1 = _mm_add_ss(sum2, _mm_movehdup_ps(sum2));
  return _mm_cvtss_f32(sum1);
}

// The canonical dot products of kRows weight rows (from matrix row `row`) with kTokens tokens
// (from token `token`): each weight vector is loaded once for all tokens, each token vector
// once for all rows.
template <int kRows, int kTokens, bool kPrefetch>
inline void dot_tile(const Bf16MatmulJob& job, int64_t row, int64_t token) {
  const int64_t cols = job.w->cols;
  const uint16_t* weights = static_cast<const uint16_t*>(job.w->data) + row * cols;
  const uint16_t* x = job.x_bf16 + token * job.x_stride;
  const char* prefetch_base = reinterpret_cast<const char*>(weights + 2 * kRows * cols);

  __m512 acc[kRows][kTokens];
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 8
    for (int t = 0; t < kTokens; ++t) acc[i][t] = _mm512_setzero_ps();

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
  int64_t c = 0;
  for (; c + kColsPerVector <= cols; c += kColsPerVector) {
    if constexpr (kPrefetch) {
      // As in the float stream form: read ahead through the tile after next.
      const char* ahead = prefetch_base + c * kRows * 2;
#pragma GCC unroll 8
      for (int b = 0; b < kRows * kColsPerVector * 2; b += 64) __builtin_prefetch(ahead + b, 0, 2);
    }
    __m512bh weight_vectors[kRows];
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) weight_vectors[i] = load_pairs(weights + i * cols + c);
    accumulate(weight_vectors, c, kColsPerVector);
  }
  if (c < cols) {
    __m512bh weight_vectors[kRows];
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      weight_vectors[i] = load_pairs_partial(weights + i * cols + c, cols - c);
    }
    accumulate(weight_vectors, c, cols - c);
  }
  float* out = job.out + token * job.w->rows + row;
#pragma GCC unroll 8
  for (int t = 0; t < kTokens; ++t)
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) out[t * job.w->rows + i] = reduce_add(acc[i][t]);
}

// Rows [row_begin, row_end) x tokens [token, token + kTokens): tiles of kRows, then single rows.
template <int kRows, int kTokens, bool kPrefetch>
void dot_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end, int64_t token) {
  int64_t row = row_begin;
  for (; row + kRows <= row_end; row += kRows) dot_tile<kRows, kTokens, kPrefetch>(job, row, token);
  for (; row < row_end; ++row) dot_tile<1, kTokens, kPrefetch>(job, row, token);
}

template <int kMax, class Body>
inline void with_token_count(int64_t n, Body&& body) {
  if constexpr (kMax >= 1) {
    if (n == kMax) return body(std::integral_constant<int, kMax>());
    return with_token_count<kMax - 1>(n, body);
  }
}

void gemm_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  if (job.n_tokens <= kMaxStreamTokens) {
    // Decode: the weights stream from memory once, up to 8 tokens riding along.
    with_token_count<kMaxStreamTokens>(job.n_tokens, [&](auto tokens) {
      constexpr int kTokens = decltype(tokens)::value;
      dot_rows<kTokens <= 4 ? 4 : 3, kTokens, true>(job, row_begin, row_end, 0);
    });
    return;
  }
  // Prefill: a panel of rows stays in L2 while every token passes over it; each token tile
  // stays in L1 across the panel's row tiles.
  for (int64_t row0 = row_begin; row0 < row_end; row0 += job.panel_rows) {
    const int64_t row1 = row_end - row0 < job.panel_rows ? row_end : row0 + job.panel_rows;
    for (int64_t token = 0; token < job.n_tokens; token += kTileTokens) {
      const int64_t n = job.n_tokens - token < kTileTokens ? job.n_tokens - token : kTileTokens;
      with_token_count<kTileTokens>(n, [&](auto tokens) {
        dot_rows<kTileRows, decltype(tokens)::value, false>(job, row0, row1, token);
      });
    }
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd

#pragma GCC pop_options

namespace dsv3::kernels::simd {

void avx512_bf16_matmul_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  gemm_rows(job, row_begin, row_end);
}

}  // namespace dsv3::kernels::simd
