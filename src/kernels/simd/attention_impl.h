// The attention products (kernels/attention_ops.h), written once against a vector type V and
// compiled once per instruction set; include after matmul_impl.h (scores reuse its dot_tile,
// so each score is the canonical dot product described there).
#pragma once

namespace dsv3::kernels::simd {
namespace {

// Keys per block: a block (up to 64 x 320 floats) stays in L2 while every query passes over it.
constexpr int64_t kAttentionKeyBlock = 64;

template <class V>
void attention_scores(const float* queries, int64_t query_stride, int64_t n_queries,
                      const float* keys, int64_t key_stride, int64_t n_keys, int64_t dim,
                      float scale, float* scores, int64_t scores_stride) {
  WeightMatrix keys_matrix;  // the keys as float "weights" for dot_tile (rows = keys)
  keys_matrix.dtype = DType::F32;
  keys_matrix.data = keys;
  keys_matrix.rows = n_keys;
  keys_matrix.cols = dim;
  for (int64_t s0 = 0; s0 < n_keys; s0 += kAttentionKeyBlock) {
    const int64_t s1 = n_keys - s0 < kAttentionKeyBlock ? n_keys : s0 + kAttentionKeyBlock;
    for (int64_t q0 = 0; q0 < n_queries; q0 += V::kDotTokens) {
      const int64_t n = n_queries - q0 < V::kDotTokens ? n_queries - q0 : V::kDotTokens;
      const float* x = queries + q0 * query_stride;
      float* out = scores + q0 * scores_stride;
      with_token_count<V::kDotTokens>(n, [&](auto count) {
        constexpr int kQueries = decltype(count)::value;
        int64_t s = s0;
        for (; s + V::kDotRows <= s1; s += V::kDotRows) {
          dot_tile<V, DType::F32, V::kDotRows, kQueries, false>(
              keys_matrix, keys + s * key_stride, key_stride, s, x, query_stride, out + s,
              scores_stride);
        }
        for (; s < s1; ++s) {
          dot_tile<V, DType::F32, 1, kQueries, false>(keys_matrix, keys + s * key_stride,
                                                      key_stride, s, x, query_stride, out + s,
                                                      scores_stride);
        }
      });
    }
  }
  constexpr int L = V::kLanes;
  const auto scale_vector = V::set1(scale);
  for (int64_t q = 0; q < n_queries; ++q) {
    float* row = scores + q * scores_stride;
    int64_t s = 0;
    for (; s + L <= n_keys; s += L) V::store(row + s, V::mul(V::load(row + s), scale_vector));
    if (s < n_keys) {
      const int count = int(n_keys - s);
      V::store_partial(row + s, V::mul(V::load_partial(row + s, count), scale_vector), count);
    }
  }
}

// kQueries queries x kVectors vectors of output columns [c, c + kVectors * L) (the last vector
// holding last_lanes columns), accumulated over keys [s_begin, s_end) in key order onto out.
template <class V, int kQueries, int kVectors>
inline void weighted_sum_tile(const float* probs, int64_t probs_stride, const float* values,
                              int64_t value_stride, int64_t s_begin, int64_t s_end, int64_t c,
                              int last_lanes, float* out, int64_t out_stride) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  F acc[kQueries][kVectors];
#pragma GCC unroll 8
  for (int q = 0; q < kQueries; ++q)
#pragma GCC unroll 8
    for (int j = 0; j < kVectors; ++j) {
      const float* p = out + q * out_stride + c + j * L;
      acc[q][j] = j + 1 < kVectors || last_lanes == L ? V::load(p) : V::load_partial(p, last_lanes);
    }
  for (int64_t s = s_begin; s < s_end; ++s) {
    const float* row = values + s * value_stride + c;
    F value[kVectors];
#pragma GCC unroll 8
    for (int j = 0; j < kVectors; ++j)
      value[j] = j + 1 < kVectors || last_lanes == L ? V::load(row + j * L)
                                                     : V::load_partial(row + j * L, last_lanes);
#pragma GCC unroll 8
    for (int q = 0; q < kQueries; ++q) {
      const F p = V::set1(probs[q * probs_stride + s]);
#pragma GCC unroll 8
      for (int j = 0; j < kVectors; ++j) acc[q][j] = V::fma(p, value[j], acc[q][j]);
    }
  }
#pragma GCC unroll 8
  for (int q = 0; q < kQueries; ++q)
#pragma GCC unroll 8
    for (int j = 0; j < kVectors; ++j) {
      float* p = out + q * out_stride + c + j * L;
      if (j + 1 < kVectors || last_lanes == L)
        V::store(p, acc[q][j]);
      else
        V::store_partial(p, acc[q][j], last_lanes);
    }
}

// All columns of kQueries queries over keys [s_begin, s_end).
template <class V, int kQueries>
inline void weighted_sum_columns(const float* probs, int64_t probs_stride, const float* values,
                                 int64_t value_stride, int64_t dim, int64_t s_begin, int64_t s_end,
                                 float* out, int64_t out_stride) {
  constexpr int L = V::kLanes;
  constexpr int kVectors = 4;
  if (s_begin >= s_end) return;
  for (int64_t c = 0; c < dim; c += kVectors * L) {
    const int64_t vectors = (dim - c + L - 1) / L;
    const int last_lanes = int(dim - c - (vectors < kVectors ? vectors - 1 : kVectors - 1) * L);
    with_token_count<kVectors>(vectors < kVectors ? vectors : kVectors, [&](auto count) {
      constexpr int kCount = decltype(count)::value;
      weighted_sum_tile<V, kQueries, kCount>(probs, probs_stride, values, value_stride, s_begin,
                                             s_end, c, last_lanes < L ? last_lanes : L, out,
                                             out_stride);
    });
  }
}

template <class V>
void attention_weighted_sum(const float* probs, int64_t probs_stride, int64_t n_queries,
                            const int64_t* key_counts, const float* values, int64_t value_stride,
                            int64_t dim, float* out, int64_t out_stride) {
  // Queries per tile: kQueries x 4 vectors of accumulators fit the register file.
  constexpr int kQueries = V::kLanes == 16 ? 4 : 2;
  int64_t max_count = 0;
  for (int64_t q = 0; q < n_queries; ++q) {
    for (int64_t c = 0; c < dim; ++c) out[q * out_stride + c] = 0.0f;
    max_count = key_counts[q] > max_count ? key_counts[q] : max_count;
  }
  // Key blocks outermost (each block's values stay in cache for every query); within a block a
  // tile of queries shares the keys all of them see, then each query takes its own rest.
  for (int64_t s0 = 0; s0 < max_count; s0 += kAttentionKeyBlock) {
    const int64_t s1 = max_count - s0 < kAttentionKeyBlock ? max_count : s0 + kAttentionKeyBlock;
    int64_t q0 = 0;
    for (; q0 + kQueries <= n_queries; q0 += kQueries) {
      int64_t shared_end = s1;
      for (int q = 0; q < kQueries; ++q)
        shared_end = key_counts[q0 + q] < shared_end ? key_counts[q0 + q] : shared_end;
      if (shared_end < s0) shared_end = s0;
      weighted_sum_columns<V, kQueries>(probs + q0 * probs_stride, probs_stride, values,
                                        value_stride, dim, s0, shared_end,
                                        out + q0 * out_stride, out_stride);
      for (int q = 0; q < kQueries; ++q) {
        const int64_t end = key_counts[q0 + q] < s1 ? key_counts[q0 + q] : s1;
        weighted_sum_columns<V, 1>(probs + (q0 + q) * probs_stride, probs_stride, values,
                                   value_stride, dim, shared_end, end,
                                   out + (q0 + q) * out_stride, out_stride);
      }
    }
    for (; q0 < n_queries; ++q0) {
      const int64_t end = key_counts[q0] < s1 ? key_counts[q0] : s1;
      weighted_sum_columns<V, 1>(probs + q0 * probs_stride, probs_stride, values, value_stride,
                                 dim, s0, end, out + q0 * out_stride, out_stride);
    }
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd
