#include "kernels/attention_bf16.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu_dispatch.h"
#include "kernels/ops.h"
#include "kernels/simd/isa_kernels.h"
#include "tensor/dtype.h"

namespace dsv3::kernels {

namespace {

int64_t pairs_of(int64_t n) { return (n + 1) / 2; }

// A bf16 row of at least `elements`, per thread (grown once, then reused).
std::vector<uint16_t>& thread_bf16_row(int64_t elements) {
  thread_local std::vector<uint16_t> row;
  if (int64_t(row.size()) < elements) row.resize(size_t(elements));
  return row;
}

// Whether the vdpbf16ps kernels run (else the references).
bool use_avx512_bf16() { return active_isa() == KernelIsa::kAvx512 && cpu_has_avx512_bf16(); }

// The value at (key s, dimension d) of pack_keys_bf16's layout.
int64_t packed_key_index(int64_t s, int64_t d, int64_t dim) {
  return (s / kBf16KeyBlock * pairs_of(dim) + d / 2) * kBf16KeyBlock * 2 +
         s % kBf16KeyBlock * 2 + d % 2;
}

// The value at (key s, column c) of pack_values_bf16's layout.
int64_t packed_value_index(int64_t s, int64_t c, int64_t dim) {
  return (s / 2 * dim + c) * 2 + s % 2;
}

}  // namespace

int64_t packed_keys_elements(int64_t n_keys, int64_t dim) {
  return (n_keys + kBf16KeyBlock - 1) / kBf16KeyBlock * pairs_of(dim) * kBf16KeyBlock * 2;
}

void pack_keys_bf16(const float* keys, int64_t key_stride, int64_t first_dim, const float* rest,
                    int64_t rest_stride, int64_t n_keys, int64_t dim, uint16_t* packed) {
  const int64_t pairs = pairs_of(dim);
  if (use_avx512_bf16()) {
    std::vector<uint16_t>& rows = thread_bf16_row(kBf16KeyBlock * ((pairs + 15) / 16 * 32));
    return simd::avx512_pack_keys_bf16(keys, key_stride, first_dim, rest, rest_stride, n_keys,
                                       dim, packed, rows.data());
  }
  std::vector<uint16_t>& row = thread_bf16_row(2 * pairs);
  for (int64_t block = 0; block * kBf16KeyBlock < n_keys; ++block) {
    uint16_t* out = packed + block * pairs * kBf16KeyBlock * 2;
    for (int64_t i = 0; i < kBf16KeyBlock; ++i) {
      const int64_t s = block * kBf16KeyBlock + i;
      if (s < n_keys) {
        round_rows_to_bf16(keys + s * key_stride, key_stride, 1, first_dim, row.data(),
                           first_dim);
        round_rows_to_bf16(rest + s * rest_stride, rest_stride, 1, dim - first_dim,
                           row.data() + first_dim, 2 * pairs - first_dim);
      } else {
        std::fill(row.begin(), row.end(), uint16_t(0));
      }
      for (int64_t p = 0; p < pairs; ++p)
        std::memcpy(out + (p * kBf16KeyBlock + i) * 2, row.data() + 2 * p, 2 * sizeof(uint16_t));
    }
  }
}

int64_t packed_values_elements(int64_t n_keys, int64_t dim) { return pairs_of(n_keys) * dim * 2; }

void pack_values_bf16(const float* values, int64_t value_stride, int64_t n_keys, int64_t dim,
                      uint16_t* packed) {
  if (use_avx512_bf16()) {
    return simd::avx512_pack_values_bf16(values, value_stride, n_keys, dim, packed);
  }
  std::vector<uint16_t>& rows = thread_bf16_row(2 * dim);
  uint16_t* first = rows.data();
  uint16_t* second = rows.data() + dim;
  for (int64_t pair = 0; pair < pairs_of(n_keys); ++pair) {
    const int64_t s = 2 * pair;
    round_rows_to_bf16(values + s * value_stride, value_stride, s + 1 < n_keys ? 2 : 1, dim,
                       first, dim);
    if (s + 1 >= n_keys) std::fill_n(second, dim, uint16_t(0));
    uint16_t* out = packed + pair * dim * 2;
    for (int64_t c = 0; c < dim; ++c) {
      out[2 * c] = first[c];
      out[2 * c + 1] = second[c];
    }
  }
}

void round_rows_to_bf16(const float* x, int64_t x_stride, int64_t rows, int64_t cols,
                        uint16_t* out, int64_t out_stride) {
  const bool simd = use_avx512_bf16();
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t* row = out + r * out_stride;
    if (simd) {
      simd::avx512_round_to_bf16(x + r * x_stride, cols, row);
    } else {
      for (int64_t c = 0; c < cols; ++c) row[c] = f32_to_bf16(x[r * x_stride + c]);
    }
    std::fill(row + cols, row + out_stride, uint16_t(0));
  }
}

void softmax_to_bf16(float* row, int64_t n, uint16_t* probs, int64_t padded) {
  if (!use_avx512_bf16()) {
    softmax(row, n);
    round_rows_to_bf16(row, n, 1, n, probs, padded);
    return;
  }
  // The AVX-512 softmax's numerators and its 1 / sum (simd/ops_impl.h).
  float max_value, sum;
  softmax_numerators(row, n, &max_value, &sum);
  const float scale = max_value == -std::numeric_limits<float>::infinity() ? 0.0f : 1.0f / sum;
  simd::avx512_scale_to_bf16(row, n, scale, probs);
  std::fill(probs + n, probs + padded, uint16_t(0));
}

void attention_scores_bf16_reference(const uint16_t* queries, int64_t query_stride,
                                     int64_t n_queries, const uint16_t* packed_keys,
                                     int64_t n_keys, int64_t dim, float scale, float* scores,
                                     int64_t scores_stride) {
  for (int64_t q = 0; q < n_queries; ++q) {
    for (int64_t s = 0; s < n_keys; ++s) {
      double sum = 0.0;
      for (int64_t d = 0; d < dim; ++d)
        sum += double(bf16_to_f32(queries[q * query_stride + d])) *
               double(bf16_to_f32(packed_keys[packed_key_index(s, d, dim)]));
      scores[q * scores_stride + s] = scale * float(sum);
    }
  }
}

void attention_weighted_sum_bf16_reference(const uint16_t* probs, int64_t probs_stride,
                                           int64_t n_queries, const int64_t* key_counts,
                                           const uint16_t* packed_values, int64_t dim,
                                           float* out, int64_t out_stride) {
  for (int64_t q = 0; q < n_queries; ++q) {
    for (int64_t c = 0; c < dim; ++c) {
      double sum = 0.0;
      for (int64_t s = 0; s < key_counts[q]; ++s)
        sum += double(bf16_to_f32(probs[q * probs_stride + s])) *
               double(bf16_to_f32(packed_values[packed_value_index(s, c, dim)]));
      out[q * out_stride + c] = float(sum);
    }
  }
}

void attention_scores_bf16(const uint16_t* queries, int64_t query_stride, int64_t n_queries,
                           const uint16_t* packed_keys, int64_t n_keys, int64_t dim, float scale,
                           float* scores, int64_t scores_stride) {
  if (use_avx512_bf16()) {
    return simd::avx512_attention_scores_bf16(queries, query_stride, n_queries, packed_keys,
                                              n_keys, dim, scale, scores, scores_stride);
  }
  attention_scores_bf16_reference(queries, query_stride, n_queries, packed_keys, n_keys, dim,
                                  scale, scores, scores_stride);
}

void attention_weighted_sum_bf16(const uint16_t* probs, int64_t probs_stride, int64_t n_queries,
                                 const int64_t* key_counts, const uint16_t* packed_values,
                                 int64_t dim, float* out, int64_t out_stride) {
  if (use_avx512_bf16()) {
    return simd::avx512_attention_weighted_sum_bf16(probs, probs_stride, n_queries, key_counts,
                                                    packed_values, dim, out, out_stride);
  }
  attention_weighted_sum_bf16_reference(probs, probs_stride, n_queries, key_counts,
                                        packed_values, dim, out, out_stride);
}

void attention_scores_bf16_rows_reference(const uint16_t* queries, int64_t query_stride,
                                          int64_t n_queries, const uint16_t* keys,
                                          int64_t key_stride, int64_t n_keys, int64_t dim,
                                          float scale, float* scores, int64_t scores_stride) {
  for (int64_t q = 0; q < n_queries; ++q) {
    for (int64_t s = 0; s < n_keys; ++s) {
      double sum = 0.0;
      for (int64_t d = 0; d < dim; ++d)
        sum += double(bf16_to_f32(queries[q * query_stride + d])) *
               double(bf16_to_f32(keys[s * key_stride + d]));
      scores[q * scores_stride + s] = scale * float(sum);
    }
  }
}

void attention_weighted_sum_bf16_rows_reference(const uint16_t* probs, int64_t probs_stride,
                                                int64_t n_queries, const int64_t* key_counts,
                                                const uint16_t* values, int64_t value_stride,
                                                int64_t dim, float* out, int64_t out_stride) {
  for (int64_t q = 0; q < n_queries; ++q) {
    for (int64_t c = 0; c < dim; ++c) {
      double sum = 0.0;
      for (int64_t s = 0; s < key_counts[q]; ++s)
        sum += double(bf16_to_f32(probs[q * probs_stride + s])) *
               double(bf16_to_f32(values[s * value_stride + c]));
      out[q * out_stride + c] = float(sum);
    }
  }
}

void attention_scores_bf16_rows(const uint16_t* queries, int64_t query_stride, int64_t n_queries,
                                const uint16_t* keys, int64_t key_stride, int64_t n_keys,
                                int64_t dim, float scale, float* scores, int64_t scores_stride) {
  if (use_avx512_bf16()) {
    return simd::avx512_attention_scores_bf16_rows(queries, query_stride, n_queries, keys,
                                                   key_stride, n_keys, dim, scale, scores,
                                                   scores_stride);
  }
  if (const auto* kernels = simd::kernels_for(active_isa())) {
    // The float kernel on the queries' exact float values.
    thread_local std::vector<float> widened;
    widened.resize(size_t(n_queries * dim));
    for (int64_t q = 0; q < n_queries; ++q)
      for (int64_t d = 0; d < dim; ++d)
        widened[size_t(q * dim + d)] = bf16_to_f32(queries[q * query_stride + d]);
    return kernels->attention_scores_bf16_keys(widened.data(), dim, n_queries, keys, key_stride,
                                               n_keys, dim, scale, scores, scores_stride);
  }
  attention_scores_bf16_rows_reference(queries, query_stride, n_queries, keys, key_stride, n_keys,
                                       dim, scale, scores, scores_stride);
}

void attention_weighted_sum_bf16_rows(const uint16_t* probs, int64_t probs_stride,
                                      int64_t n_queries, const int64_t* key_counts,
                                      const uint16_t* values, int64_t value_stride, int64_t dim,
                                      float* out, int64_t out_stride) {
  if (use_avx512_bf16()) {
    return simd::avx512_attention_weighted_sum_bf16_rows(probs, probs_stride, n_queries,
                                                         key_counts, values, value_stride, dim,
                                                         out, out_stride);
  }
  if (const auto* kernels = simd::kernels_for(active_isa())) {
    // The float kernel on the probabilities' exact float values.
    thread_local std::vector<float> widened;
    widened.resize(size_t(n_queries * probs_stride));
    for (int64_t q = 0; q < n_queries; ++q)
      for (int64_t s = 0; s < key_counts[q]; ++s)
        widened[size_t(q * probs_stride + s)] = bf16_to_f32(probs[q * probs_stride + s]);
    return kernels->attention_weighted_sum_bf16_values(widened.data(), probs_stride, n_queries,
                                                       key_counts, values, value_stride, dim,
                                                       out, out_stride);
  }
  attention_weighted_sum_bf16_rows_reference(probs, probs_stride, n_queries, key_counts, values,
                                             value_stride, dim, out, out_stride);
}

}  // namespace dsv3::kernels
