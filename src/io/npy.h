// NumPy .npy files (format version 1.0), float32 little-endian, C order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3 {

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data);

}  // namespace dsv3
