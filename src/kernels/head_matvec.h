// Products with the small per-head matrices of MLA's absorbed form, W_UK^T ([kv_lora_rank]
// [qk_nope_head_dim]) and W_UV ([v_head_dim][kv_lora_rank]), BF16 weights times float
// activations, one or many tokens:
//   out[t][r] = sum_c W[r][c] * x[t][c]
// A decode step runs 32 of them per layer on rows of 64 or 256 values, where the float matmul
// kernel's horizontal sums (one per output row) cost more than the products themselves.
//
// Layout (pack_head_matrix): blocks of 16 rows, each [(cols + 1) / 2 column pairs][16 rows][2],
// zero-padded; a row's pair is one 32-bit word, so one vector load gives 16 (or 8) rows' even
// and odd columns side by side, and every output row is a lane: no horizontal sums.
//
// Each output is, whatever the instruction set, the tokens or the thread (bitwise):
//   even = 0, odd = 0; for p = 0, 1, ...: even = fma(W[r][2p], x[2p], even),
//                                          odd = fma(W[r][2p + 1], x[2p + 1], odd);
//   out = even + odd
// (the last odd column of an odd `cols` has no odd step).
#pragma once

#include <cstdint>

namespace dsv3::kernels {

// Rows per block of the packed layout.
inline constexpr int64_t kHeadBlockRows = 16;

// A packed matrix: `data` in pack_head_matrix's layout of rows x cols.
struct PackedHeadMatrix {
  const uint16_t* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t bytes() const;
};

// Elements of the packed layout of rows x cols.
int64_t packed_head_elements(int64_t rows, int64_t cols);
// A BF16 [rows][cols] matrix, element (r, c) at bf16[r * row_stride + c * col_stride], into
// the packed layout (col_stride 1: row-major; row_stride 1: the transpose of a row-major one).
void pack_head_matrix(const uint16_t* bf16, int64_t rows, int64_t cols, int64_t row_stride,
                      int64_t col_stride, uint16_t* packed);

// out[t * rows + r] for t < n_tokens, x[t * cols + c], on the calling thread. prefetch_next:
// bytes the thread reads next (the next head's matrix), brought into L2 as the product goes.
void head_matvec(const PackedHeadMatrix& w, const float* x, int64_t n_tokens, float* out,
                 const void* prefetch_next = nullptr, int64_t prefetch_bytes = 0);
// The scalar form of the same order (std::fma): bitwise what head_matvec gives.
void head_matvec_reference(const PackedHeadMatrix& w, const float* x, int64_t n_tokens,
                           float* out);

}  // namespace dsv3::kernels
