// A weight matrix as it lies in the checkpoint (usually memory-mapped): the kernels read it in
// its own format, so nothing is expanded or copied at load time.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace dsv3 {

struct WeightMatrix {
  DType dtype = DType::F32;  // F32, F16, BF16 or F8_E4M3
  const void* data = nullptr;  // row-major [rows][cols]
  int64_t rows = 0;            // output features
  int64_t cols = 0;            // input features
  // FP8 block scaling, the official DeepSeek-V3 layout:
  //   W[r][c] = fp8[r][c] * block_scale[(r / block_rows) * scale_cols + c / block_cols]
  const float* block_scale = nullptr;
  int64_t block_rows = 0;
  int64_t block_cols = 0;
  int64_t scale_cols = 0;

  bool empty() const { return data == nullptr; }
  // One element as float (slow; for references and tests).
  float at(int64_t row, int64_t col) const;
};

}  // namespace dsv3
