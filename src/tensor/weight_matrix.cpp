#include "tensor/weight_matrix.h"

namespace dsv3 {

float WeightMatrix::at(int64_t row, int64_t col) const {
  const int64_t index = row * cols + col;
  switch (dtype) {
    case DType::F32:
      return static_cast<const float*>(data)[index];
    case DType::BF16:
      return bf16_to_f32(static_cast<const uint16_t*>(data)[index]);
    case DType::F16:
      return f16_to_f32(static_cast<const uint16_t*>(data)[index]);
    case DType::F8_E4M3: {
      float scale = block_scale[(row / block_rows) * scale_cols + col / block_cols];
      return fp8_e4m3_to_f32(static_cast<const uint8_t*>(data)[index]) * scale;
    }
    default:
      return 0.0f;
  }
}

}  // namespace dsv3
