#include "tensor/weight_matrix.h"

#include "tensor/block_quant.h"

namespace dsv3 {

float WeightMatrix::at(int64_t row, int64_t col) const {
  const int64_t index =
      layout == WeightLayout::kRowBlocks ? row_block_index(row, col, rows, cols) : row * cols + col;
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
    case DType::Q8:
    case DType::Q4: {
      const auto* row_codes = static_cast<const uint8_t*>(data) + row * row_bytes();
      return float(quant_value(dtype, row_codes, col)) *
             f16_to_f32(group_scale[row * scale_cols + col / kQuantGroup]);
    }
    default:
      return 0.0f;
  }
}

int64_t WeightMatrix::row_bytes() const {
  return is_block_quantized(dtype) ? quant_row_bytes(dtype, cols) : cols * int64_t(dtype_size(dtype));
}

WeightMatrix stacked_rows(const WeightMatrix& top, const WeightMatrix& bottom) {
  if (top.empty() || bottom.empty() || top.dtype != bottom.dtype || top.cols != bottom.cols ||
      top.byte_activations != bottom.byte_activations || top.layout != bottom.layout ||
      top.scale_cols != bottom.scale_cols ||
      (top.layout == WeightLayout::kRowBlocks && top.rows % kRowGroupRows != 0) ||
      (top.block_scale == nullptr) != (bottom.block_scale == nullptr) ||
      (top.group_scale == nullptr) != (bottom.group_scale == nullptr))
    return {};
  if (static_cast<const char*>(top.data) + top.rows * top.row_bytes() != bottom.data) return {};
  if (top.block_scale != nullptr &&
      (top.block_rows != bottom.block_rows || top.block_cols != bottom.block_cols ||
       top.rows % top.block_rows != 0 ||
       top.block_scale + top.rows / top.block_rows * top.scale_cols != bottom.block_scale))
    return {};
  if (top.group_scale != nullptr && top.group_scale + top.rows * top.scale_cols != bottom.group_scale)
    return {};
  WeightMatrix stacked = top;
  stacked.rows = top.rows + bottom.rows;
  return stacked;
}

int64_t WeightMatrix::stored_bytes() const {
  if (data == nullptr) return 0;
  int64_t bytes = rows * row_bytes();
  if (block_scale) bytes += ((rows + block_rows - 1) / block_rows) * scale_cols * 4;
  if (group_scale) bytes += rows * scale_cols * 2;
  return bytes;
}

}  // namespace dsv3
