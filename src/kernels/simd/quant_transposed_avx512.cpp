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

#include "kernels/simd/reduce_avx512_impl.h"

namespace dsv3::kernels::simd {

namespace {

constexpr int kPieces = int(kTransposedBlockCols / 16);  // vectors of 16 columns per block

}  // namespace

void avx512_quant_transposed_columns(const WeightMatrix& w, const float* x, int64_t n_tokens,
                                     float* out, int64_t col_begin, int64_t col_end) {
  static_assert(kTransposedBlockCols == kQ4ChunkCols, "a block is one packed Q4 chunk");
  const int64_t row_bytes = w.row_bytes();
  const auto* codes = static_cast<const uint8_t*>(w.data);
  // Piece p holds columns col_begin + 16p ... (group p / 2 of the block): its lanes past col_end
  // are masked, its group index kept inside the row (the masked lanes never reach out).
  __mmask16 masks[kPieces];
  for (int p = 0; p < kPieces; ++p) {
    const int64_t valid = col_end - (col_begin + 16 * p);
    masks[p] = valid >= 16 ? __mmask16(0xffff) : valid > 0 ? __mmask16((1u << valid) - 1u) : 0;
  }
  int64_t groups[kPieces / 2];
  for (int g = 0; g < kPieces / 2; ++g) {
    const int64_t group = col_begin / kQuantGroup + g;
    groups[g] = group < w.scale_cols ? group : w.scale_cols - 1;
  }
  // Q4 codes u in [0, 15] -> float(u - 8) by one vpermps: it reads the low 4 bits of each index.
  const __m512 q4_values = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t t = 0; t < n_tokens; ++t) {
    __m512 acc[kPieces];
#pragma GCC unroll 8
    for (int p = 0; p < kPieces; ++p) acc[p] = _mm512_setzero_ps();
    for (int64_t r = 0; r < w.rows; ++r) {
      const __m512 x_r = _mm512_set1_ps(x[t * w.rows + r]);
      const uint8_t* row = codes + r * row_bytes;
      const uint16_t* scales = w.group_scale + r * w.scale_cols;
      __m512 values[kPieces];
      if (w.dtype == DType::Q8) {
#pragma GCC unroll 8
        for (int p = 0; p < kPieces; ++p)
          values[p] = _mm512_cvtepi32_ps(
              _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(masks[p], row + col_begin + 16 * p)));
      } else {
        // Byte i of the chunk: column i in its low nibble, column 64 + i in its high one.
        const uint8_t* chunk = row + col_begin / kQ4ChunkCols * kQ4ChunkBytes;
#pragma GCC unroll 4
        for (int p = 0; p < kPieces / 2; ++p) {
          const __m512i bytes = _mm512_cvtepu8_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk + 16 * p)));
          values[p] = _mm512_permutexvar_ps(bytes, q4_values);
          values[p + kPieces / 2] = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), q4_values);
        }
      }
#pragma GCC unroll 4
      for (int g = 0; g < kPieces / 2; ++g) {
        const __m512 scale = broadcast_f16(scales + groups[g]);
        acc[2 * g] = _mm512_fmadd_ps(x_r, _mm512_mul_ps(values[2 * g], scale), acc[2 * g]);
        acc[2 * g + 1] =
            _mm512_fmadd_ps(x_r, _mm512_mul_ps(values[2 * g + 1], scale), acc[2 * g + 1]);
      }
    }
#pragma GCC unroll 8
    for (int p = 0; p < kPieces; ++p)
      _mm512_mask_storeu_ps(out + t * w.cols + col_begin + 16 * p, masks[p], acc[p]);
  }
}

}  // namespace dsv3::kernels::simd

#pragma GCC pop_options
