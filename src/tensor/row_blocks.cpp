#include "tensor/row_blocks.h"

#include <cstring>
#include <vector>

namespace dsv3 {

bool fits_row_blocks(const WeightMatrix& w) {
  return w.dtype == DType::BF16 && w.layout == WeightLayout::kRows && w.data != nullptr &&
         w.rows > 0 && w.rows % kRowBlockRows == 0 && w.cols > 0 && w.cols % 2 == 0;
}

void regroup_into_row_blocks(WeightMatrix& w, void* data) {
  const int64_t cols = w.cols, block_elements = kRowBlockRows * cols;
  auto* elements = static_cast<uint16_t*>(data);
  std::vector<uint16_t> rows(static_cast<size_t>(block_elements));
  for (int64_t block = 0; block < w.rows / kRowBlockRows; ++block) {
    uint16_t* at = elements + block * block_elements;
    std::memcpy(rows.data(), at, size_t(block_elements) * sizeof(uint16_t));
    for (int64_t pair = 0; pair < cols / 2; ++pair) {
      uint16_t* to = at + pair * 2 * kRowBlockRows;
      for (int64_t r = 0; r < kRowBlockRows; ++r) {
        to[2 * r] = rows[size_t(r * cols + 2 * pair)];
        to[2 * r + 1] = rows[size_t(r * cols + 2 * pair + 1)];
      }
    }
  }
  w.layout = WeightLayout::kRowBlocks;
}

void copy_rows_from_row_blocks(const WeightMatrix& w, int64_t row, int64_t count, uint16_t* out) {
  const auto* elements = static_cast<const uint16_t*>(w.data);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t r = row + i;
    const uint16_t* block = elements + (r / kRowBlockRows) * kRowBlockRows * w.cols;
    const uint16_t* lane = block + (r % kRowBlockRows) * 2;
    uint16_t* to = out + i * w.cols;
    for (int64_t pair = 0; pair < w.cols / 2; ++pair) {
      to[2 * pair] = lane[pair * 2 * kRowBlockRows];
      to[2 * pair + 1] = lane[pair * 2 * kRowBlockRows + 1];
    }
  }
}

}  // namespace dsv3
