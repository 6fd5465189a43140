#include "kernels/head_matvec.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu_dispatch.h"
#include "kernels/simd/isa_kernels.h"

namespace dsv3::kernels {

namespace {

int64_t pairs_of(int64_t cols) { return (cols + 1) / 2; }

// The two bf16 halves of a packed word as floats (exact).
float low_half(uint32_t word) {
  const uint32_t bits = word << 16;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
float high_half(uint32_t word) {
  const uint32_t bits = word & 0xffff0000u;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

}  // namespace

int64_t PackedHeadMatrix::bytes() const {
  return packed_head_elements(rows, cols) * int64_t(sizeof(uint16_t));
}

int64_t packed_head_elements(int64_t rows, int64_t cols) {
  const int64_t blocks = (rows + kHeadBlockRows - 1) / kHeadBlockRows;
  return blocks * pairs_of(cols) * kHeadBlockRows * 2;
}

void pack_head_matrix(const uint16_t* bf16, int64_t rows, int64_t cols, int64_t row_stride,
                      int64_t col_stride, uint16_t* packed) {
  const int64_t pairs = pairs_of(cols);
  std::memset(packed, 0, size_t(packed_head_elements(rows, cols)) * sizeof(uint16_t));
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t* block = packed + (r / kHeadBlockRows) * pairs * kHeadBlockRows * 2;
    for (int64_t c = 0; c < cols; ++c)
      block[((c / 2) * kHeadBlockRows + r % kHeadBlockRows) * 2 + c % 2] =
          bf16[r * row_stride + c * col_stride];
  }
}

void head_matvec_reference(const PackedHeadMatrix& w, const float* x, int64_t n_tokens,
                           float* out) {
  const int64_t pairs = pairs_of(w.cols), full_pairs = w.cols / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * w.cols;
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint16_t* block = w.data + (r / kHeadBlockRows) * pairs * kHeadBlockRows * 2;
      float even = 0.0f, odd = 0.0f;
      for (int64_t p = 0; p < pairs; ++p) {
        uint32_t word;
        std::memcpy(&word, block + (p * kHeadBlockRows + r % kHeadBlockRows) * 2, sizeof word);
        even = std::fma(low_half(word), xt[2 * p], even);
        if (p < full_pairs) odd = std::fma(high_half(word), xt[2 * p + 1], odd);
      }
      out[t * w.rows + r] = even + odd;
    }
  }
}

void head_matvec(const PackedHeadMatrix& w, const float* x, int64_t n_tokens, float* out,
                 const void* prefetch_next, int64_t prefetch_bytes) {
  if (const simd::IsaKernels* kernels = simd::kernels_for(active_isa()))
    return kernels->head_matvec(w.data, w.rows, w.cols, x, n_tokens, out, prefetch_next,
                                prefetch_bytes);
  head_matvec_reference(w, x, n_tokens, out);
}

}  // namespace dsv3::kernels
