#include "tensor/block_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace dsv3 {

namespace {

int clamp_round(float value, int low, int high) {
  const float rounded = std::nearbyint(value);
  if (!(rounded >= float(low))) return low;  // also NaN
  if (rounded > float(high)) return high;
  return int(rounded);
}

// Squared error of group `w` (n values) with scale `scale` and codes clamped to [low, high].
float group_error(const float* w, int64_t n, float scale, int low, int high) {
  float error = 0.0f;
  const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    const float diff = w[j] - float(clamp_round(w[j] * inverse, low, high)) * scale;
    error += diff * diff;
  }
  return error;
}

// The float16 scale of a Q4 group: candidates m / k around the signed largest value m, each
// refined once by least squares over its codes, the one of least squared error kept.
uint16_t q4_group_scale(const float* w, int64_t n) {
  float largest = 0.0f;
  for (int64_t j = 0; j < n; ++j)
    if (std::fabs(w[j]) > std::fabs(largest)) largest = w[j];
  if (largest == 0.0f || !std::isfinite(largest)) return f32_to_f16(0.0f);
  uint16_t best = f32_to_f16(largest / -8.0f);
  float best_error = group_error(w, n, f16_to_f32(best), -8, 7);
  for (float k : {-8.5f, -7.5f, -7.0f, -6.5f, 6.5f, 7.0f, 7.5f}) {
    for (int refine = 0; refine < 2; ++refine) {
      float scale = f16_to_f32(f32_to_f16(largest / k));
      if (refine == 1) {
        // Least-squares scale for the codes of the first try.
        const float inverse = 1.0f / scale;
        double wq = 0.0, qq = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          const int q = clamp_round(w[j] * inverse, -8, 7);
          wq += double(w[j]) * q;
          qq += double(q) * q;
        }
        if (qq == 0.0) continue;
        scale = f16_to_f32(f32_to_f16(float(wq / qq)));
      }
      if (scale == 0.0f || !std::isfinite(scale)) continue;
      const float error = group_error(w, n, scale, -8, 7);
      if (error < best_error) {
        best_error = error;
        best = f32_to_f16(scale);
      }
    }
  }
  return best;
}

}  // namespace

int64_t quant_row_bytes(DType dtype, int64_t cols) {
  if (dtype == DType::Q8) return cols;
  if (dtype == DType::Q4) return (cols + kQ4ChunkCols - 1) / kQ4ChunkCols * kQ4ChunkBytes;
  return 0;
}

void quantize_row(DType dtype, const float* row, int64_t cols, uint8_t* codes, uint16_t* scales) {
  const int64_t groups = quant_groups(cols);
  if (dtype == DType::Q4) std::memset(codes, 0x88, size_t(quant_row_bytes(dtype, cols)));
  for (int64_t g = 0; g < groups; ++g) {
    const float* w = row + g * kQuantGroup;
    const int64_t n = std::min(kQuantGroup, cols - g * kQuantGroup);
    float scale;
    if (dtype == DType::Q8) {
      float largest = 0.0f;
      for (int64_t j = 0; j < n; ++j) largest = std::max(largest, std::fabs(w[j]));
      scales[g] = f32_to_f16(std::isfinite(largest) ? largest / 127.0f : 0.0f);
    } else {
      scales[g] = q4_group_scale(w, n);
    }
    scale = f16_to_f32(scales[g]);
    const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t col = g * kQuantGroup + j;
      if (dtype == DType::Q8) {
        codes[col] = uint8_t(int8_t(clamp_round(w[j] * inverse, -127, 127)));
      } else {
        const uint8_t code = uint8_t(clamp_round(w[j] * inverse, -8, 7) + 8);
        const int64_t chunk = col / kQ4ChunkCols, within = col % kQ4ChunkCols;
        uint8_t& byte = codes[chunk * kQ4ChunkBytes + within % kQ4ChunkBytes];
        byte = within < kQ4ChunkBytes ? uint8_t((byte & 0xf0) | code) : uint8_t((byte & 0x0f) | (code << 4));
      }
    }
  }
}

int quant_value(DType dtype, const uint8_t* row_codes, int64_t col) {
  if (dtype == DType::Q8) return int(int8_t(row_codes[col]));
  const int64_t chunk = col / kQ4ChunkCols, within = col % kQ4ChunkCols;
  const uint8_t byte = row_codes[chunk * kQ4ChunkBytes + within % kQ4ChunkBytes];
  return int(within < kQ4ChunkBytes ? (byte & 0x0f) : (byte >> 4)) - 8;
}

void quantize_activations(const float* x, int64_t cols, int code_max, int16_t* codes,
                          float* scales) {
  const int64_t groups = quant_groups(cols);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t begin = g * kQuantGroup, end = std::min(cols, begin + kQuantGroup);
    float largest = 0.0f;
    for (int64_t c = begin; c < end; ++c) largest = std::max(largest, std::fabs(x[c]));
    const bool usable = largest > 0.0f && std::isfinite(largest);
    const float inverse = usable ? float(code_max) / largest : 0.0f;
    scales[g] = usable ? largest / float(code_max) : 0.0f;
    for (int64_t c = begin; c < end; ++c)
      codes[c] = int16_t(clamp_round(x[c] * inverse, -code_max, code_max));
  }
}

}  // namespace dsv3
