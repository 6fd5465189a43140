// kernels::matmul for the block-quantized Q8 / Q4 weights (tensor/block_quant.h): each token's
// activations are quantized to int16 or int8 codes (activation_code_max) per group of 32
// columns with their own scale (so a token's result never depends on its batch), every group's
// integer dot product is exact, and
//   out[t][r] = sum over groups g of float(dot_g(q_w[r], q_x[t])) * (scale_w[r][g] * scale_x[t][g])
// The AVX-512 kernels (simd/quant_avx512.cpp: vpmaddwd for int16 codes, VNNI vpdpbusd for int8
// codes) sum the groups in 16 float lanes; the portable kernel here one group after the other
// (also used for Q4 on AVX-512 CPUs without VNNI). Only kernels/matmul.cpp calls these.
#pragma once

#include <cstdint>

#include "tensor/weight_matrix.h"

namespace dsv3::kernels {

// Throws dsv3::Error unless w is a consistent Q8/Q4 matrix (scales present, scale_cols right).
void validate_quant_weight(const WeightMatrix& w);
// The activations of a product quantized per token (quant_matmul.cpp).
struct QuantizedActivations;

// A Q8/Q4 product whose activations are quantized, ready for any thread to compute any rows.
struct QuantRowsJob {
  const WeightMatrix* w = nullptr;
  const QuantizedActivations* activations = nullptr;
  int64_t n_tokens = 0;
  float* out = nullptr;  // [n_tokens][w->rows]
  bool simd = false;     // the AVX-512 kernels (quant_simd_active)
};
// Quantizes x ([n_tokens][w.cols]) into the calling thread's activation buffer number `slot`
// (one per product of a group; kept between calls) for a validated Q8/Q4 w.
QuantRowsJob prepare_quant_rows(const WeightMatrix& w, const float* x, int64_t n_tokens,
                                float* out, size_t slot);
// Whether the products of a and b (validated Q8/Q4 matrices) quantize their activations alike
// (the same columns, the same format): products of both on one x can share one quantization.
bool quantizes_activations_alike(const WeightMatrix& a, const WeightMatrix& b);
// The job of w's product on the activations `prepared` already quantized (prepared.w and w
// quantize them alike), writing to out.
QuantRowsJob share_quant_rows(const QuantRowsJob& prepared, const WeightMatrix& w, float* out);
// Rows [row_begin, row_end) of job.out, all tokens.
void quant_rows(const QuantRowsJob& job, int64_t row_begin, int64_t row_end);

// The VNNI kernels' layout of one token's int8 activation codes (`stride` codes, a multiple of
// 128, zero past cols, each within kByteActivationCodeMax; stride / 32 scales), see
// simd::QuantMatmulJob: the codes as bytes, 8 lane scales and 8 lane offsets per group, the
// offsets -weight_offset * (the group's code sum), weight_offset the amount the kernel adds to
// make the weights unsigned (8 for Q4, 128 for Q8). The portable form, the reference of
// simd::avx512_arrange_byte_activations.
void arrange_byte_activations(const int16_t* codes, const float* scales, int64_t stride,
                              int weight_offset, int8_t* bytes, float* lane_scales,
                              int32_t* lane_offsets);

// out[t][r] for a validated Q8/Q4 w, n_tokens >= 1, w.rows >= 1, w.cols >= 1.
void quant_matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out);
// Whether quant_matmul uses an AVX-512 kernel for w with the active kernel set.
bool quant_simd_active(const WeightMatrix& w);
// Whether that kernel is a VNNI one, multiplying int8 activation codes with vpdpbusd (Q4, and
// Q8 with byte_activations, on a CPU with AVX512_VNNI).
bool quant_vnni_active(const WeightMatrix& w);

}  // namespace dsv3::kernels
