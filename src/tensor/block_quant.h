// The block-quantized integer weight formats written by `dsv3 quantize` (Q8 and Q4), and the
// per-token int8 quantization of activations their kernels use. One scale (float16) per group of
// kQuantGroup consecutive columns of a row; a row's groups never span two rows, so any range of
// rows is a view.
//
//   Q8: W[r][c] = q[r][c] * scale[r][c / 32], q int8 in [-127, 127], a row is `cols` bytes.
//   Q4: W[r][c] = (u - 8) * scale[r][c / 32], u a 4-bit code in [0, 15]. A row is packed in
//       chunks of 128 columns, 64 bytes each: byte i of chunk k holds column 128k + i in its low
//       nibble and column 128k + 64 + i in its high nibble (so that one 64-byte load gives two
//       vectors of 64 consecutive columns). The last chunk is padded with code 8 (zero).
//
// In the checkpoint: "<name>.weight" I8 [rows, cols] (Q8) or U8 [rows, ceil(cols/128)*64] (Q4),
// "<name>.weight_scale" F16 [rows, ceil(cols/32)], and config.json's quantization_config
// {"quant_method": "dsv3", "fmt": "q8" | "q4", "weight_block_size": [1, 32]}.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace dsv3 {

inline constexpr int64_t kQuantGroup = 32;     // columns per scale
inline constexpr int64_t kQ4ChunkCols = 128;   // columns per packed Q4 chunk
inline constexpr int64_t kQ4ChunkBytes = 64;   // bytes per packed Q4 chunk

inline bool is_block_quantized(DType dtype) { return dtype == DType::Q8 || dtype == DType::Q4; }

// Scale groups per row.
inline int64_t quant_groups(int64_t cols) { return (cols + kQuantGroup - 1) / kQuantGroup; }
// Bytes of one stored row (the row stride) of a Q8/Q4 matrix.
int64_t quant_row_bytes(DType dtype, int64_t cols);

// Quantizes one row of `cols` floats: writes quant_row_bytes(dtype, cols) bytes to `codes` and
// quant_groups(cols) float16 scales to `scales`. Q8: round(w / s) with s = max|w| / 127; Q4: the
// scale of each group is searched (a few candidates around max|w| / 8, both signs) for the least
// squared error, the idea of k-quants' make_qx_quants. Scales are rounded to float16 before the
// codes are chosen, so the codes fit the stored scale.
void quantize_row(DType dtype, const float* row, int64_t cols, uint8_t* codes, uint16_t* scales);

// The integer value (q, in [-127, 127] or [-8, 7]) of column `col` of a stored row.
int quant_value(DType dtype, const uint8_t* row_codes, int64_t col);

// Per-token activation quantization used by the Q8/Q4 kernels: x[c] ~= q[c] * scale[c / 32] with
// scale = max|x| / code_max over the group and q = round(x / scale). A zero group has scale 0.
// Writes quant_groups(cols) scales.
//   Q8 weights: int16 codes, code_max = kActivationCodeMax = 127 * 256 + 127 (int8 activations,
//     as in llama.cpp's q8_0 x q8_0, cost several times the error of the weights themselves on
//     heavy-tailed inputs such as the SwiGLU product), except for a matrix marked
//     byte_activations (the output head, see WeightMatrix): int8 codes as Q4's.
//   Q4 weights: int8 codes, code_max = kByteActivationCodeMax = 127 (llama.cpp's q4_0 x q8_0):
//     the weights' own error is ~16 times that of Q8, so the activations' int8 rounding is small
//     beside it, and one VNNI vpdpbusd multiplies 64 weights by 64 codes.
inline constexpr int kActivationCodeMax = 32639;
inline constexpr int kByteActivationCodeMax = 127;
// The code_max of the activations multiplied by a Q8 / Q4 matrix (byte_activations: its
// WeightMatrix field).
inline int activation_code_max(DType weight_dtype, bool byte_activations) {
  return weight_dtype == DType::Q4 || byte_activations ? kByteActivationCodeMax
                                                       : kActivationCodeMax;
}
void quantize_activations(const float* x, int64_t cols, int code_max, int16_t* codes,
                          float* scales);

}  // namespace dsv3
