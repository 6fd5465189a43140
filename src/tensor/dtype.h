// Element types found in checkpoints, and exact conversions between them and float.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace dsv3 {

// Q8 and Q4 are the block-quantized weight formats of tensor/block_quant.h: not safetensors
// dtypes (stored as I8 / U8 codes plus F16 scales), only WeightMatrix formats.
enum class DType { F64, F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL, Q8, Q4 };

// Bytes per element (0 for Q4, whose rows are packed: see quant_row_bytes).
size_t dtype_size(DType dtype);
// The safetensors spelling ("F32", "BF16", "F8_E4M3", ...); "Q8" / "Q4" for those formats.
std::string_view dtype_name(DType dtype);
// Parses the safetensors spelling; throws dsv3::Error naming `where` for an unknown one.
DType parse_dtype(std::string_view name, const std::string& where);

inline float bf16_to_f32(uint16_t bits) {
  uint32_t widened = uint32_t(bits) << 16;
  float value;
  std::memcpy(&value, &widened, 4);
  return value;
}

// Round to nearest even, as torch does when casting float32 -> bfloat16.
inline uint16_t f32_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);

// OCP FP8 E4M3 ("e4m3fn" in torch): 1 sign, 4 exponent (bias 7), 3 mantissa bits, no
// infinities, 0x7f/0xff are NaN, largest finite value 448.
float fp8_e4m3_to_f32(uint8_t bits);
// Round to nearest even, saturating to +-448 (torch's float8_e4m3fn cast saturates too
// when values are pre-clamped, which is how the official checkpoints were made).
uint8_t f32_to_fp8_e4m3(float value);

}  // namespace dsv3
