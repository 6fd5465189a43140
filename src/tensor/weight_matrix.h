// A weight matrix as it lies in the checkpoint (usually memory-mapped): the kernels read it in
// its own format, so nothing is expanded or copied at load time. A BF16 matrix in a private
// copy of the file may have its rows regrouped in place (WeightLayout::kRowBlocks).
#pragma once

#include <algorithm>
#include <cstdint>

#include "tensor/dtype.h"

namespace dsv3 {

// How the elements of a matrix lie in `data`.
enum class WeightLayout : uint8_t {
  kRows,  // row-major [rows][cols], as stored in the checkpoint
  // BF16 only, rows a multiple of kRowBlockRows and cols even: blocks of 16 rows, one 64-byte
  // vector per column pair of a block, so that the vdpbf16ps kernel puts one output row per
  // float lane (see simd/bf16_row_blocks_avx512.cpp). The blocks lie interleaved in pairs (groups
  // of 32 rows; a last group of one block when the blocks are odd): a group is
  // [cols / 2][its blocks][16][2], so that a tile of a group's two blocks reads one sequential
  // stream, and the tiles of a range of groups one after another. A group takes the bytes its
  // rows take in kRows, so views of whole groups stay views.
  kRowBlocks,
};
inline constexpr int64_t kRowBlockRows = 16;
inline constexpr int64_t kRowGroupBlocks = 2;
inline constexpr int64_t kRowGroupRows = kRowGroupBlocks * kRowBlockRows;

// Where block `block` of a kRowBlocks matrix of rows x cols lies: its column pair p (16 rows x
// 2 elements) at element first + p * pair_stride.
struct RowBlockPlace {
  int64_t first = 0;
  int64_t pair_stride = 0;
};
inline RowBlockPlace row_block_place(int64_t block, int64_t rows, int64_t cols) {
  const int64_t group = block / kRowGroupBlocks;
  const int64_t group_blocks =
      std::min(kRowGroupBlocks, rows / kRowBlockRows - group * kRowGroupBlocks);
  return {group * kRowGroupRows * cols + (block % kRowGroupBlocks) * 2 * kRowBlockRows,
          group_blocks * 2 * kRowBlockRows};
}

// The element index of (row, col) in a kRowBlocks matrix of rows x cols.
inline int64_t row_block_index(int64_t row, int64_t col, int64_t rows, int64_t cols) {
  const RowBlockPlace place = row_block_place(row / kRowBlockRows, rows, cols);
  return place.first + (col / 2) * place.pair_stride + (row % kRowBlockRows) * 2 + col % 2;
}

struct WeightMatrix {
  DType dtype = DType::F32;  // F32, F16, BF16, F8_E4M3, Q8 or Q4
  const void* data = nullptr;  // [rows][cols] as `layout` says (Q4: rows of packed chunks)
  int64_t rows = 0;            // output features
  int64_t cols = 0;            // input features
  // FP8 block scaling, the official DeepSeek-V3 layout:
  //   W[r][c] = fp8[r][c] * block_scale[(r / block_rows) * scale_cols + c / block_cols]
  const float* block_scale = nullptr;
  int64_t block_rows = 0;
  int64_t block_cols = 0;
  int64_t scale_cols = 0;
  // Q8 / Q4 (tensor/block_quant.h): float16 scales [rows][scale_cols], one per 32 columns.
  const uint16_t* group_scale = nullptr;
  // Q8 only: the activations this matrix multiplies are quantized to int8 codes (as for Q4)
  // instead of int16, so that VNNI's vpdpbusd multiplies 64 columns per instruction. The model
  // sets it on a Q8 output head, where it measured free in accuracy (README, `quantize`).
  bool byte_activations = false;
  WeightLayout layout = WeightLayout::kRows;

  bool empty() const { return data == nullptr; }
  // Bytes per row in `data` (from one row to the next in kRows; a kRowBlocks group of 32 rows
  // takes 32 times as many).
  int64_t row_bytes() const;
  // Bytes of the stored matrix with its scales.
  int64_t stored_bytes() const;
  // One element as float (slow; for references and tests).
  float at(int64_t row, int64_t col) const;
};

// The rows of `top` followed by the rows of `bottom` as one matrix, without a copy, when they
// lie back to back in memory with their scales (same format and columns, FP8 blocks not cut):
// an MLP's gate_proj and up_proj, stored one after the other in Hugging Face checkpoints, then
// take one product. Empty when they do not (kRowBlocks: unless the top's rows are whole groups).
WeightMatrix stacked_rows(const WeightMatrix& top, const WeightMatrix& bottom);

}  // namespace dsv3
