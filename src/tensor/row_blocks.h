// The kRowBlocks layout of BF16 matrices (tensor/weight_matrix.h): regrouping a row-major
// matrix in place, and reading rows back.
#pragma once

#include <cstdint>

#include "tensor/weight_matrix.h"

namespace dsv3 {

// Whether w can take the kRowBlocks layout: BF16, kRows, rows a multiple of 16, cols even.
bool fits_row_blocks(const WeightMatrix& w);

// Regroups the row-major BF16 matrix at `data` ([rows][cols], fits_row_blocks) into kRowBlocks
// in place, one group of 32 rows at a time (each group keeps its bytes), and sets w.layout.
// w.data must be `data`.
void regroup_into_row_blocks(WeightMatrix& w, void* data);

// Rows [row, row + count) of a kRowBlocks matrix as row-major bf16, row i at out + i * w.cols.
void copy_rows_from_row_blocks(const WeightMatrix& w, int64_t row, int64_t count, uint16_t* out);

}  // namespace dsv3
