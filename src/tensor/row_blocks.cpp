#include "tensor/row_blocks.h"

#include <cstring>
#include <vector>

#include "tensor/thread_pool.h"

namespace dsv3 {

bool fits_row_blocks(const WeightMatrix& w) {
  return w.dtype == DType::BF16 && w.layout == WeightLayout::kRows && w.data != nullptr &&
         w.rows > 0 && w.rows % kRowBlockRows == 0 && w.cols > 0 && w.cols % 2 == 0;
}

void regroup_into_row_blocks(WeightMatrix& w, void* data) {
  const int64_t cols = w.cols, block_elements = kRowBlockRows * cols;
  auto* elements = static_cast<uint16_t*>(data);
  // Blocks on the pool's threads (a few GB of weights take a fraction of a second), each
  // regrouped in a buffer and copied back. A column pair of a row is one 32-bit word (the
  // matrix itself may be only 2-byte aligned: it is reached through memcpy).
  const size_t block_bytes = size_t(block_elements) * sizeof(uint16_t);
  ThreadPool::global().parallel_for(w.rows / kRowBlockRows, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> rows(block_bytes / 4), regrouped(block_bytes / 4);
    const int64_t pairs = cols / 2;
    for (int64_t block = begin; block < end; ++block) {
      uint16_t* at = elements + block * block_elements;
      std::memcpy(rows.data(), at, block_bytes);
      for (int64_t pair = 0; pair < pairs; ++pair)
        for (int64_t r = 0; r < kRowBlockRows; ++r)
          regrouped[size_t(pair * kRowBlockRows + r)] = rows[size_t(r * pairs + pair)];
      std::memcpy(at, regrouped.data(), block_bytes);
    }
  });
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
