#include "tensor/row_blocks.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "tensor/thread_pool.h"

namespace dsv3 {

bool fits_row_blocks(const WeightMatrix& w) {
  return w.dtype == DType::BF16 && w.layout == WeightLayout::kRows && w.data != nullptr &&
         w.rows > 0 && w.rows % kRowBlockRows == 0 && w.cols > 0 && w.cols % 2 == 0;
}

void regroup_into_row_blocks(WeightMatrix& w, void* data) {
  const int64_t rows = w.rows, cols = w.cols, pairs = cols / 2;
  auto* elements = static_cast<uint16_t*>(data);
  // Groups on the pool's threads (a few GB of weights take a fraction of a second), each
  // regrouped in a buffer and copied back. A column pair of a row is one 32-bit word (the
  // matrix itself may be only 2-byte aligned: it is reached through memcpy).
  const int64_t groups = (rows + kRowGroupRows - 1) / kRowGroupRows;
  ThreadPool::global().parallel_for(groups, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> group_rows(size_t(kRowGroupRows * pairs)), regrouped(group_rows.size());
    for (int64_t group = begin; group < end; ++group) {
      const int64_t row0 = group * kRowGroupRows;
      const int64_t n_rows = std::min(kRowGroupRows, rows - row0);
      const size_t bytes = size_t(n_rows * cols) * sizeof(uint16_t);
      uint16_t* at = elements + row0 * cols;
      std::memcpy(group_rows.data(), at, bytes);
      // Word (pair, row) of the group at pair * n_rows + row: the blocks of a column pair side
      // by side, each its 16 rows (row_block_place).
      for (int64_t pair = 0; pair < pairs; ++pair)
        for (int64_t r = 0; r < n_rows; ++r)
          regrouped[size_t(pair * n_rows + r)] = group_rows[size_t(r * pairs + pair)];
      std::memcpy(at, regrouped.data(), bytes);
    }
  });
  w.layout = WeightLayout::kRowBlocks;
}

void copy_rows_from_row_blocks(const WeightMatrix& w, int64_t row, int64_t count, uint16_t* out) {
  const auto* elements = static_cast<const uint16_t*>(w.data);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t r = row + i;
    const RowBlockPlace place = row_block_place(r / kRowBlockRows, w.rows, w.cols);
    const uint16_t* lane = elements + place.first + (r % kRowBlockRows) * 2;
    uint16_t* to = out + i * w.cols;
    for (int64_t pair = 0; pair < w.cols / 2; ++pair) {
      to[2 * pair] = lane[pair * place.pair_stride];
      to[2 * pair + 1] = lane[pair * place.pair_stride + 1];
    }
  }
}

}  // namespace dsv3
