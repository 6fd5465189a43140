#include "kernels/attention_ops.h"

#include <cstdlib>
#include <memory>
#include <new>

#include "kernels/cpu_dispatch.h"
#include "kernels/simd/isa_kernels.h"

namespace dsv3::kernels {

float* simd::thread_scratch_floats(int64_t floats) {
  struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<float, FreeDeleter> buffer;
  thread_local int64_t capacity = 0;
  if (floats > capacity) {
    const int64_t rounded = (floats + 15) / 16 * 16;
    capacity = 0;
    buffer.reset(static_cast<float*>(std::aligned_alloc(64, size_t(rounded) * sizeof(float))));
    if (!buffer) throw std::bad_alloc();
    capacity = rounded;
  }
  return buffer.get();
}

void attention_scores_reference(const float* queries, int64_t query_stride, int64_t n_queries,
                                const float* keys, int64_t key_stride, int64_t n_keys, int64_t dim,
                                float scale, float* scores, int64_t scores_stride) {
  for (int64_t q = 0; q < n_queries; ++q) {
    for (int64_t s = 0; s < n_keys; ++s) {
      double sum = 0.0;
      for (int64_t c = 0; c < dim; ++c)
        sum += double(queries[q * query_stride + c]) * double(keys[s * key_stride + c]);
      scores[q * scores_stride + s] = scale * float(sum);
    }
  }
}

void attention_weighted_sum_reference(const float* probs, int64_t probs_stride, int64_t n_queries,
                                      const int64_t* key_counts, const float* values,
                                      int64_t value_stride, int64_t dim, float* out,
                                      int64_t out_stride) {
  for (int64_t q = 0; q < n_queries; ++q) {
    for (int64_t c = 0; c < dim; ++c) {
      double sum = 0.0;
      for (int64_t s = 0; s < key_counts[q]; ++s)
        sum += double(probs[q * probs_stride + s]) * double(values[s * value_stride + c]);
      out[q * out_stride + c] = float(sum);
    }
  }
}

void attention_scores(const float* queries, int64_t query_stride, int64_t n_queries,
                      const float* keys, int64_t key_stride, int64_t n_keys, int64_t dim,
                      float scale, float* scores, int64_t scores_stride) {
  if (const auto* kernels = simd::kernels_for(active_isa())) {
    return kernels->attention_scores(queries, query_stride, n_queries, keys, key_stride, n_keys,
                                     dim, scale, scores, scores_stride);
  }
  attention_scores_reference(queries, query_stride, n_queries, keys, key_stride, n_keys, dim,
                             scale, scores, scores_stride);
}

void attention_weighted_sum(const float* probs, int64_t probs_stride, int64_t n_queries,
                            const int64_t* key_counts, const float* values, int64_t value_stride,
                            int64_t dim, float* out, int64_t out_stride) {
  if (const auto* kernels = simd::kernels_for(active_isa())) {
    return kernels->attention_weighted_sum(probs, probs_stride, n_queries, key_counts, values,
                                           value_stride, dim, out, out_stride);
  }
  attention_weighted_sum_reference(probs, probs_stride, n_queries, key_counts, values,
                                   value_stride, dim, out, out_stride);
}

}  // namespace dsv3::kernels
