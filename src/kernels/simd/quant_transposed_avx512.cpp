// A Q8 / Q4 matrix applied transposed (kernels/matmul_transposed.h) for AVX-512 (F, BW, VL):
// a block of 128 columns (one packed Q4 chunk) is 8 vectors of 16 float accumulators per token;
// every row of the block is dequantized exactly (code times its float16 scale) and added with
// one fused multiply-add per vector, rows in order:
//   acc[c] = fma(x[t][r], float(q[r][c]) * scale[r][c / 32], acc[c])   for r = 0, 1, ...

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>

#include "kernels/simd/quant_kernels.h"
#include "tensor/block_quant.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")

namespace dsv3::kernels::simd {

namespace {

constexpr int kPieces = int(kTransposedBlockCols / 16);  // vectors of 16 columns per block

// One float16 scale, broadcast.
__m512 broadcast_scale(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_set1_epi16(short(*p))); }

}  // namespace

void avx512_quant_transposed_columns(const WeightMatrix& w, const float* x, int64_t n_tokens,
                                     float* out, int64_t col_begin, int64_t col_end) {
  static_assert(kTransposedBlockCols == kQ4ChunkCols, "a block is one packed Q4 chunk");
  const int64_t row_bytes = w.row_bytes();
  const auto* codes = static_cast<const uint8_t*>(w.data);
  // Piece p holds columns col_begin + 16p ...: its lanes past col_end are masked, its scale
  // index kept inside the row (the masked lanes never reach out).
  __mmask16 masks[kPieces];
  int64_t groups[kPieces];
  for (int p = 0; p < kPieces; ++p) {
    const int64_t valid = col_end - (col_begin + 16 * p);
    masks[p] = valid >= 16 ? __mmask16(0xffff) : valid > 0 ? __mmask16((1u << valid) - 1u) : 0;
    const int64_t group = (col_begin + 16 * p) / kQuantGroup;
    groups[p] = group < w.scale_cols ? group : w.scale_cols - 1;
  }
  const __m512i low_nibble = _mm512_set1_epi32(0x0f);
  const __m512i q4_zero = _mm512_set1_epi32(8);
  for (int64_t t = 0; t < n_tokens; ++t) {
    __m512 acc[kPieces];
#pragma GCC unroll 8
    for (int p = 0; p < kPieces; ++p) acc[p] = _mm512_setzero_ps();
    for (int64_t r = 0; r < w.rows; ++r) {
      const __m512 x_r = _mm512_set1_ps(x[t * w.rows + r]);
      const uint8_t* row = codes + r * row_bytes;
      const uint16_t* scales = w.group_scale + r * w.scale_cols;
      __m512i ints[kPieces];
      if (w.dtype == DType::Q8) {
#pragma GCC unroll 8
        for (int p = 0; p < kPieces; ++p)
          ints[p] = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(masks[p], row + col_begin + 16 * p));
      } else {
        // Byte i of the chunk: column i in its low nibble, column 64 + i in its high one.
        const uint8_t* chunk = row + col_begin / kQ4ChunkCols * kQ4ChunkBytes;
#pragma GCC unroll 4
        for (int p = 0; p < kPieces / 2; ++p) {
          const __m512i bytes = _mm512_cvtepu8_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk + 16 * p)));
          ints[p] = _mm512_sub_epi32(_mm512_and_si512(bytes, low_nibble), q4_zero);
          ints[p + kPieces / 2] = _mm512_sub_epi32(_mm512_srli_epi32(bytes, 4), q4_zero);
        }
      }
#pragma GCC unroll 8
      for (int p = 0; p < kPieces; ++p) {
        const __m512 weights = _mm512_mul_ps(_mm512_cvtepi32_ps(ints[p]), broadcast_scale(scales + groups[p]));
        acc[p] = _mm512_fmadd_ps(x_r, weights, acc[p]);
      }
    }
#pragma GCC unroll 8
    for (int p = 0; p < kPieces; ++p)
      _mm512_mask_storeu_ps(out + t * w.cols + col_begin + 16 * p, masks[p], acc[p]);
  }
}

}  // namespace dsv3::kernels::simd

#pragma GCC pop_options
