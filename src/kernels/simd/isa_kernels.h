// The per-instruction-set kernels behind kernels::matmul and the ops: a table of function
// pointers per instruction set, filled by simd/avx512.cpp and simd/avx2.cpp (each compiled for
// its own target). Only kernels/*.cpp include this; the model never sees it.
#pragma once

#include <cstdint>

#include "kernels/cpu_dispatch.h"
#include "tensor/weight_matrix.h"

namespace dsv3::kernels::simd {

// One matrix product, shared read-only by every thread working on it.
struct MatmulJob {
  const WeightMatrix* w = nullptr;
  const float* x = nullptr;  // [n_tokens][x_stride], the first w->cols of each row used
  int64_t x_stride = 0;
  int64_t n_tokens = 0;
  float* out = nullptr;  // [n_tokens][w->rows]
  // Panel form only: weight rows converted to float at a time, each panel_stride floats apart
  // (the scratch holds panel_rows * panel_stride floats).
  int64_t panel_rows = 0;
  int64_t panel_stride = 0;
  // Stream form only: the weight bytes this thread streams next, as Bf16MatmulJob's.
  const void* prefetch_next = nullptr;
  int64_t prefetch_next_bytes = 0;
};

struct IsaKernels {
  int lanes;     // floats per vector register
  int dot_rows;  // weight rows per register tile of the panel form

  // Both forms compute every output with the one canonical sequence of operations described in
  // simd/matmul_impl.h, so a token's result never depends on its batch.
  // Stream form for few tokens: rows [row_begin, row_end) of out, all tokens, weights read in
  // their stored format once per 8 tokens.
  void (*matvec_rows)(const MatmulJob& job, int64_t row_begin, int64_t row_end);
  // Panel form for many tokens: rows [row_begin, row_end) of out, all tokens, weights converted
  // to float once per panel of job.panel_rows rows into `scratch`.
  void (*gemm_rows)(const MatmulJob& job, int64_t row_begin, int64_t row_end, float* scratch);

  void (*rms_norm)(const float* x, const float* weight, int64_t n, float eps, float* out);
  void (*silu_mul)(const float* gate, const float* up, int64_t n, float* out);
  void (*sigmoid)(const float* x, int64_t n, float* out);
  void (*softmax)(float* row, int64_t n);
  void (*softmax_numerators)(float* row, int64_t n, float* row_max, float* row_sum);
  int64_t (*argmax)(const float* x, int64_t n);
  // kernels/head_matvec.h
  void (*head_matvec)(const uint16_t* packed, int64_t rows, int64_t cols, const float* x,
                      int64_t n_tokens, float* out, const void* prefetch_next,
                      int64_t prefetch_bytes);
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float alpha, const float* x, float* y, int64_t n);
  void (*weighted_row_sum)(const float* const* rows, const float* weights, int64_t count,
                           int64_t n, float* out);
  void (*rotate_pairs)(float* x, int64_t heads, int64_t stride, const float* cos,
                       const float* sin, int64_t half, bool interleaved);
  // kernels/attention_ops.h
  void (*attention_scores)(const float* queries, int64_t query_stride, int64_t n_queries,
                           const float* keys, int64_t key_stride, int64_t n_keys, int64_t dim,
                           float scale, float* scores, int64_t scores_stride);
  void (*attention_weighted_sum)(const float* probs, int64_t probs_stride, int64_t n_queries,
                                 const int64_t* key_counts, const float* values,
                                 int64_t value_stride, int64_t dim, float* out,
                                 int64_t out_stride);
  // The same over keys and values stored as bf16 rows (kernels/attention_bf16.h's *_bf16_rows
  // where vdpbf16ps is absent): each value widened to float, then the float kernels' order.
  void (*attention_scores_bf16_keys)(const float* queries, int64_t query_stride,
                                     int64_t n_queries, const uint16_t* keys, int64_t key_stride,
                                     int64_t n_keys, int64_t dim, float scale, float* scores,
                                     int64_t scores_stride);
  void (*attention_weighted_sum_bf16_values)(const float* probs, int64_t probs_stride,
                                             int64_t n_queries, const int64_t* key_counts,
                                             const uint16_t* values, int64_t value_stride,
                                             int64_t dim, float* out, int64_t out_stride);
};

// A buffer of at least `floats` floats, 64-byte aligned, kept by the calling thread for the
// kernels' own use (defined outside the target regions, so no std code is compiled for them).
float* thread_scratch_floats(int64_t floats);

const IsaKernels& avx512_kernels();
const IsaKernels& avx2_kernels();
// The table of an instruction set; nullptr for the scalar path.
const IsaKernels* kernels_for(KernelIsa isa);

// The product with activations rounded to bf16 (vdpbf16ps, AVX512_BF16), BF16 weights only.
struct Bf16MatmulJob {
  const WeightMatrix* w = nullptr;
  // x rounded to bf16: [n_tokens][x_stride], the first w->cols of each row used.
  const uint16_t* x_bf16 = nullptr;
  int64_t x_stride = 0;
  int64_t n_tokens = 0;
  float* out = nullptr;    // [n_tokens][w->rows]
  int64_t panel_rows = 0;  // weight rows kept in L2 while all tokens pass (many tokens)
  // The bytes this thread reads next after the rows asked for (the start of its next row
  // range, often in another matrix), or nullptr. The software prefetch runs on into them
  // instead of past the end of the range, so the next range does not start cold: for few
  // tokens (decode) as the stream goes; for many (prefill) during the last panel's later passes.
  const void* prefetch_next = nullptr;
  int64_t prefetch_next_bytes = 0;
  // Rows [0, amx_rows) run on AMX (amx_bf16.cpp), the others on vdpbf16ps; amx_rows is
  // amx_bf16_rows(*w), fixed per matrix. x_amx: x in the AMX tiles' layout (amx_pack_tokens).
  int64_t amx_rows = 0;
  const uint16_t* x_amx = nullptr;
  // Floats from one token's outputs to the next; 0: w->rows (the FP8 kernel computes a few rows
  // of a larger matrix at a time).
  int64_t out_stride = 0;
  // When set (FP8 weights, fp8_bf16_avx512.cpp), each pass of the panel form over tokens
  // [token, token + count) first asks for their activations, which come back as rows
  // [0, count) of the returned buffer (x_stride apart) in place of x_bf16's.
  const uint16_t* (*pass_activations)(const void* context, int64_t token, int64_t count) = nullptr;
  const void* pass_context = nullptr;
  // Token t's activations lie at x_bf16 + (t - x_first_token) * x_stride.
  int64_t x_first_token = 0;
};
// Where a streaming tile prefetches the bytes at `ahead`: there while they lie inside the
// thread's row range (ending at range_end); past it, that far into the thread's next range
// (`next`, of next_bytes, from the job's prefetch_next) when given, and beyond that one too at
// its last byte, a harmless hint.
inline const char* prefetch_target(const char* ahead, const char* range_end, const void* next,
                                   int64_t next_bytes) {
  if (next == nullptr || ahead < range_end) return ahead;
  const int64_t past = ahead - range_end;
  return static_cast<const char*>(next) + (past < next_bytes ? past : next_bytes);
}

// Weight rows per register tile of the bf16 kernel's prefill loop (panel_rows is a multiple).
inline constexpr int kBf16TileRows = 4;
// Rows [row_begin, row_end) of out, all tokens; requires cpu_has_avx512_bf16(). Each output is
// the canonical bf16 dot product described in simd/avx512_bf16.cpp, whatever n_tokens.
void avx512_bf16_matmul_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end);
// The same for a kRowBlocks matrix (rows in whole blocks of 16), one output row per lane: see
// simd/bf16_row_blocks_avx512.cpp. avx512_bf16_matmul_rows calls it for such matrices.
void avx512_bf16_row_blocks_matmul_rows(const Bf16MatmulJob& job, int64_t row_begin,
                                        int64_t row_end);
// out[i] = f32_to_bf16(x[i]) for i < n (bitwise); requires cpu_has_avx512_bf16().
void avx512_round_to_bf16(const float* x, int64_t n, uint16_t* out);
// out[i] = f32_to_bf16(x[i] * scale) for i < n (bitwise); requires cpu_has_avx512_bf16().
void avx512_scale_to_bf16(const float* x, int64_t n, float scale, uint16_t* out);

// The vdpbf16ps forms of kernels/attention_bf16.h (same arguments); require
// cpu_has_avx512_bf16(). See simd/attention_bf16_avx512.cpp.
void avx512_attention_scores_bf16(const uint16_t* queries, int64_t query_stride,
                                  int64_t n_queries, const uint16_t* packed_keys, int64_t n_keys,
                                  int64_t dim, float scale, float* scores, int64_t scores_stride);
// pack_keys_bf16 with a scratch of 16 * 32 * ((dim + 31) / 32) elements, and pack_values_bf16.
void avx512_pack_keys_bf16(const float* keys, int64_t key_stride, int64_t first_dim,
                           const float* rest, int64_t rest_stride, int64_t n_keys, int64_t dim,
                           uint16_t* packed, uint16_t* scratch);
void avx512_pack_values_bf16(const float* values, int64_t value_stride, int64_t n_keys,
                             int64_t dim, uint16_t* packed);
// attention_scores_bf16_rows and attention_weighted_sum_bf16_rows on vdpbf16ps, see
// simd/attention_bf16_rows_avx512.cpp.
void avx512_attention_scores_bf16_rows(const uint16_t* queries, int64_t query_stride,
                                       int64_t n_queries, const uint16_t* keys,
                                       int64_t key_stride, int64_t n_keys, int64_t dim,
                                       float scale, float* scores, int64_t scores_stride);
void avx512_attention_weighted_sum_bf16_rows(const uint16_t* probs, int64_t probs_stride,
                                             int64_t n_queries, const int64_t* key_counts,
                                             const uint16_t* values, int64_t value_stride,
                                             int64_t dim, float* out, int64_t out_stride);
void avx512_attention_weighted_sum_bf16(const uint16_t* probs, int64_t probs_stride,
                                        int64_t n_queries, const int64_t* key_counts,
                                        const uint16_t* packed_values, int64_t dim, float* out,
                                        int64_t out_stride);

// AMX (TDPBF16PS) for the bf16 product, see simd/amx_bf16.cpp. The rows of w that AMX computes
// whenever amx_bf16_active(): the whole 16-row tiles, when cols is a multiple of 32; else 0.
int64_t amx_bf16_rows(const WeightMatrix& w);
// Tokens are multiplied in blocks of 16 (a B tile); the packed activations of n_tokens tokens of
// `cols` columns take amx_packed_elements(n_tokens, cols) uint16 values.
inline constexpr int64_t kAmxTokens = 16;
inline int64_t amx_packed_elements(int64_t n_tokens, int64_t cols) {
  return (n_tokens + kAmxTokens - 1) / kAmxTokens * kAmxTokens * cols;
}
// Packs tokens [token_begin, token_end) (token_begin a multiple of 16) of x_bf16 ([n][x_stride])
// into `packed` (of all n_tokens tokens), zero-filling the slots of missing tokens of their last
// block of 16.
void amx_pack_tokens(const uint16_t* x_bf16, int64_t x_stride, int64_t cols, int64_t n_tokens,
                     int64_t token_begin, int64_t token_end, uint16_t* packed);
// Rows [row_begin, row_end) of out, all within [0, job.amx_rows); requires amx_bf16_active().
void amx_bf16_matmul_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end);

// The product of FP8 weights with bf16 activations on vdpbf16ps, see simd/fp8_bf16_avx512.cpp.
struct Fp8MatmulJob {
  const WeightMatrix* w = nullptr;  // F8_E4M3 with block scales
  const float* x = nullptr;         // float activations, rows of w->cols
  const int64_t* x_rows = nullptr;  // token t is row x_rows[t] of x (null: row t)
  int64_t n_tokens = 0;
  float* out = nullptr;    // [n_tokens][w->rows]
  int64_t x_stride = 0;    // elements from one token's scaled activations to the next
  int64_t unit_rows = 0;   // the most rows widened and multiplied at a time (for_fp8_units)
  // Tells this call's activations from an earlier call's (the kernel keeps a token's scaled
  // activations across the units of one scale row).
  uint64_t epoch = 0;
  // As Bf16MatmulJob's: the codes this thread reads next, or nullptr.
  const void* prefetch_next = nullptr;
  int64_t prefetch_next_bytes = 0;
};

// The units an FP8 product is computed in: rows [row_begin, row_end) cut at the scale blocks'
// row boundaries, each stretch then into equal pieces (to whole 4-row tiles) of at most
// max_rows rows; unit(first, end) for each, in order.
template <class Unit>
void for_fp8_units(const WeightMatrix& w, int64_t row_begin, int64_t row_end, int64_t max_rows,
                   Unit&& unit) {
  for (int64_t first = row_begin; first < row_end;) {
    const int64_t block_end = (first / w.block_rows + 1) * w.block_rows;
    const int64_t stretch_end = block_end < row_end ? block_end : row_end;
    const int64_t stretch = stretch_end - first;
    const int64_t pieces = (stretch + max_rows - 1) / max_rows;
    const int64_t piece = ((stretch + pieces - 1) / pieces + 3) / 4 * 4;
    while (first < stretch_end) {
      const int64_t end = stretch_end - first < piece ? stretch_end : first + piece;
      unit(first, end);
      first = end;
    }
  }
}

// Rows [row_begin, row_end) of out, all tokens; requires cpu_has_avx512_bf16().
void avx512_fp8_matmul_rows(const Fp8MatmulJob& job, int64_t row_begin, int64_t row_end);

// FP8 weights are widened with the bits placed straight into a float (fp8 value * 2^-120,
// exact, fp8 subnormals becoming float subnormals) and then multiplied by block_scale * 2^120,
// so the SIMD paths need block_scale * 2^120 to stay finite.
inline constexpr float kFp8BitsFactor = 0x1p120f;
inline constexpr float kFp8MaxFastScale = 0x1p7f;

}  // namespace dsv3::kernels::simd
