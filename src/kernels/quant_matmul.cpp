#include "kernels/quant_matmul.h"

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "kernels/cpu_dispatch.h"
#include "kernels/simd/quant_kernels.h"
#include "tensor/block_quant.h"
#include "tensor/thread_pool.h"
#include "util/error.h"

namespace dsv3::kernels {

namespace {

// Rows per parallel task (a multiple of every register tile's rows).
constexpr int64_t kRowsPerTask = 32;
// Bytes of weights per panel when many tokens pass over them (kept in L2).
constexpr int64_t kPanelBytes = int64_t(128) << 10;
// Tokens quantized inline below this count; above it in parallel.
constexpr int64_t kParallelQuantizeTokens = 16;

std::string describe(const WeightMatrix& w) {
  return std::string(dtype_name(w.dtype)) + " [" + std::to_string(w.rows) + ", " +
         std::to_string(w.cols) + "]";
}

}  // namespace

// The activations of one product, quantized per token; per-thread buffers grown on demand and
// kept, so a warm decode step allocates nothing.
struct QuantizedActivations {
  std::vector<int16_t> codes;  // [n_tokens][stride]
  std::vector<float> scales;   // [n_tokens][groups]
  // The VNNI kernels' layout (see simd::QuantMatmulJob).
  std::vector<int8_t> bytes;
  std::vector<float> lane_scales;
  std::vector<int32_t> lane_offsets;
  int64_t stride = 0;  // codes per token: cols rounded up to 128
  int64_t groups = 0;  // scale groups per token: stride / 32
};

namespace {

template <class T>
void grow(std::vector<T>& buffer, int64_t count) {
  if (buffer.size() < size_t(count)) buffer.resize(size_t(count));
}

// The amount a VNNI kernel adds to w's codes to make them unsigned for vpdpbusd: Q4 stores
// them so (q + 8), Q8 flips their sign bits (q + 128).
int vnni_weight_offset(const WeightMatrix& w) { return w.dtype == DType::Q4 ? 8 : 128; }

void quantize_tokens(const WeightMatrix& w, const float* x, int64_t n_tokens, bool byte_layout,
                     QuantizedActivations& a) {
  a.stride = (w.cols + kQ4ChunkCols - 1) / kQ4ChunkCols * kQ4ChunkCols;
  a.groups = a.stride / kQuantGroup;
  grow(a.codes, n_tokens * a.stride);
  grow(a.scales, n_tokens * a.groups);
  if (byte_layout) {
    grow(a.bytes, n_tokens * a.stride);
    grow(a.lane_scales, n_tokens * a.groups * 8);
    grow(a.lane_offsets, n_tokens * a.groups * 8);
  }
  // AVX-512 whenever the CPU runs it, also for the portable Q4 kernel (no VNNI): bitwise the
  // same codes either way.
  const bool simd = active_isa() == KernelIsa::kAvx512;
  const int code_max = activation_code_max(w.dtype, w.byte_activations);
  const int weight_offset = vnni_weight_offset(w);
  auto quantize_token = [&](int64_t t) {
    int16_t* codes = a.codes.data() + t * a.stride;
    float* scales = a.scales.data() + t * a.groups;
    std::fill(codes + w.cols, codes + a.stride, int16_t(0));
    std::fill(scales, scales + a.groups, 0.0f);
    if (simd) {
      simd::avx512_quantize_activations(x + t * w.cols, w.cols, code_max, codes, scales);
    } else {
      quantize_activations(x + t * w.cols, w.cols, code_max, codes, scales);
    }
    if (!byte_layout) return;
    int8_t* bytes = a.bytes.data() + t * a.stride;
    float* lane_scales = a.lane_scales.data() + t * a.groups * 8;
    int32_t* lane_offsets = a.lane_offsets.data() + t * a.groups * 8;
    if (simd) {
      simd::avx512_arrange_byte_activations(codes, scales, a.stride, weight_offset, bytes,
                                            lane_scales, lane_offsets);
    } else {
      arrange_byte_activations(codes, scales, a.stride, weight_offset, bytes, lane_scales,
                               lane_offsets);
    }
  };
  if (n_tokens < kParallelQuantizeTokens) {
    for (int64_t t = 0; t < n_tokens; ++t) quantize_token(t);
    return;
  }
  ThreadPool::global().parallel_for(n_tokens, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) quantize_token(t);
  });
}

// The portable kernel: rows [row_begin, row_end), one group after the other.
void quant_rows_portable(const WeightMatrix& w, const QuantizedActivations& a, int64_t n_tokens,
                         int64_t row_begin, int64_t row_end, float* out) {
  thread_local std::vector<int8_t> row_values;
  grow(row_values, a.stride);
  const auto* codes = static_cast<const uint8_t*>(w.data);
  const int64_t groups = quant_groups(w.cols);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row_codes = codes + r * w.row_bytes();
    for (int64_t c = 0; c < w.cols; ++c) row_values[size_t(c)] = int8_t(quant_value(w.dtype, row_codes, c));
    const uint16_t* row_scales = w.group_scale + r * w.scale_cols;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const int16_t* x_codes = a.codes.data() + t * a.stride;
      const float* x_scales = a.scales.data() + t * a.groups;
      float sum = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t begin = g * kQuantGroup, end = std::min(w.cols, begin + kQuantGroup);
        int32_t dot = 0;
        for (int64_t c = begin; c < end; ++c) dot += int32_t(row_values[size_t(c)]) * x_codes[c];
        sum += float(dot) * (f16_to_f32(row_scales[g]) * x_scales[g]);
      }
      out[t * w.rows + r] = sum;
    }
  }
}

}  // namespace

void arrange_byte_activations(const int16_t* codes, const float* scales, int64_t stride,
                              int weight_offset, int8_t* bytes, float* lane_scales,
                              int32_t* lane_offsets) {
  for (int64_t c = 0; c < stride; ++c) bytes[c] = int8_t(codes[c]);  // |q| <= 127
  // Group g fills lanes (g % 2) * 8 ... of step g / 2: flat index g * 8.
  for (int64_t g = 0; g < stride / kQuantGroup; ++g) {
    int32_t sum = 0;
    for (int64_t c = g * kQuantGroup; c < (g + 1) * kQuantGroup; ++c) sum += codes[c];
    std::fill_n(lane_scales + g * 8, 8, scales[g]);
    std::fill_n(lane_offsets + g * 8, 8, 0);
    lane_offsets[g * 8] = -weight_offset * sum;
  }
}

void validate_quant_weight(const WeightMatrix& w) {
  if (w.group_scale == nullptr && w.rows * w.cols > 0)
    throw Error("matmul: " + describe(w) + " weight without group scales");
  if (w.scale_cols != quant_groups(w.cols)) {
    throw Error("matmul: " + describe(w) + " has " + std::to_string(w.scale_cols) +
                " scale columns, needs " + std::to_string(quant_groups(w.cols)));
  }
}

bool quant_vnni_active(const WeightMatrix& w) {
  return active_isa() == KernelIsa::kAvx512 && cpu_has_avx512_vnni() &&
         (w.dtype == DType::Q4 || w.byte_activations);
}

// Without VNNI, Q8 with int8 codes takes the int16 kernel (the codes are int16 there anyway).
bool quant_simd_active(const WeightMatrix& w) {
  return w.dtype == DType::Q8 ? active_isa() == KernelIsa::kAvx512 : quant_vnni_active(w);
}

QuantRowsJob prepare_quant_rows(const WeightMatrix& w, const float* x, int64_t n_tokens,
                                float* out, size_t slot) {
  // std::deque: slots already handed out stay where they are when more are added.
  thread_local std::deque<QuantizedActivations> t_slots;
  while (t_slots.size() <= slot) t_slots.emplace_back();
  QuantizedActivations& activations = t_slots[slot];
  QuantRowsJob job;
  job.w = &w;
  job.activations = &activations;
  job.n_tokens = n_tokens;
  job.out = out;
  job.simd = quant_simd_active(w);
  quantize_tokens(w, x, n_tokens, quant_vnni_active(w), activations);
  return job;
}

bool quantizes_activations_alike(const WeightMatrix& a, const WeightMatrix& b) {
  return a.cols == b.cols && a.dtype == b.dtype && a.byte_activations == b.byte_activations;
}

QuantRowsJob share_quant_rows(const QuantRowsJob& prepared, const WeightMatrix& w, float* out) {
  QuantRowsJob job = prepared;
  job.w = &w;
  job.out = out;
  job.simd = quant_simd_active(w);
  return job;
}

void quant_rows(const QuantRowsJob& rows_job, int64_t row_begin, int64_t row_end) {
  const WeightMatrix& w = *rows_job.w;
  const QuantizedActivations& activations = *rows_job.activations;
  if (!rows_job.simd) {
    return quant_rows_portable(w, activations, rows_job.n_tokens, row_begin, row_end,
                               rows_job.out);
  }
  simd::QuantMatmulJob job;
  job.w = &w;
  job.x_codes = activations.codes.data();
  job.x_stride = activations.stride;
  job.x_scales = activations.scales.data();
  job.x_groups = activations.groups;
  job.x_bytes = activations.bytes.data();
  job.x_lane_scales = activations.lane_scales.data();
  job.x_lane_offsets = activations.lane_offsets.data();
  job.n_tokens = rows_job.n_tokens;
  job.out = rows_job.out;
  job.panel_rows = std::max<int64_t>(kRowsPerTask, kPanelBytes / std::max<int64_t>(w.row_bytes(), 1) /
                                                       kRowsPerTask * kRowsPerTask);
  if (w.dtype == DType::Q4) return simd::avx512_vnni_q4_rows(job, row_begin, row_end);
  if (quant_vnni_active(w)) return simd::avx512_vnni_q8_rows(job, row_begin, row_end);
  simd::avx512_quant_rows(job, row_begin, row_end);
}

void quant_matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* out) {
  const QuantRowsJob job = prepare_quant_rows(w, x, n_tokens, out, 0);
  const int64_t n_tasks = (w.rows + kRowsPerTask - 1) / kRowsPerTask;
  ThreadPool::global().parallel_for(n_tasks, [&](int64_t task_begin, int64_t task_end) {
    quant_rows(job, task_begin * kRowsPerTask, std::min(w.rows, task_end * kRowsPerTask));
  });
}

}  // namespace dsv3::kernels
