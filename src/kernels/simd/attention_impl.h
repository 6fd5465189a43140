// The attention products (kernels/attention_ops.h), written once against a vector type V and
// compiled once per instruction set; include after matmul_impl.h (with_token_count). Keys and
// values are floats, or bf16 widened to floats as they are read (a bf16 cache where vdpbf16ps
// is absent: kernels/attention_bf16.h's *_bf16_rows).
#pragma once

namespace dsv3::kernels::simd {
namespace {

// A stored key or value as a float: itself, or a bf16 widened (exact).
inline float stored_value(float value) { return value; }
inline float stored_value(uint16_t bits) {
  return __builtin_bit_cast(float, uint32_t(bits) << 16);
}

// L stored values from p (count of them, the rest zero, for the partial form) as floats.
template <class V>
inline typename V::F load_stored(const float* p) { return V::load(p); }
template <class V>
inline typename V::F load_stored(const uint16_t* p) { return V::load_bf16(p); }
template <class V>
inline typename V::F load_stored_partial(const float* p, int count) {
  return V::load_partial(p, count);
}
template <class V>
inline typename V::F load_stored_partial(const uint16_t* p, int count) {
  return V::load_bf16_partial(p, count);
}

// Keys per block of the weighted sum: a block (up to 64 x 320 floats) stays in L2 while every
// query passes over it.
constexpr int64_t kAttentionKeyBlock = 64;

// Scores of up to kVectors * L queries (one per lane of kVectors vectors) against kRows keys:
// lane q of acc[v][r] accumulates queries[v L + q][c] * keys[r][c] for c = 0, 1, ... in order,
// one fused multiply-add per step, so each score is the same sequential dot product whatever
// the lane, the vector, the tile or the other queries. Each key value is loaded once
// (broadcast) for all the queries: two query vectors halve the broadcasts per multiply-add.
// queries_by_dim holds the queries transposed, [c][kVectors L].
template <class V, int kRows, int kVectors, class Key>
inline void scores_tile(const float* queries_by_dim, const Key* keys, int64_t key_stride,
                        int64_t dim, float scale, int n_queries, float* scores,
                        int64_t scores_stride) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  F acc[kVectors][kRows];
#pragma GCC unroll 2
  for (int v = 0; v < kVectors; ++v)
#pragma GCC unroll 24
    for (int r = 0; r < kRows; ++r) acc[v][r] = V::zero();
  // Per cache line of the rows, a prefetch of the same line of the next tile's rows: kRows
  // streams read 4 bytes a step are too many for the hardware prefetcher to follow from DRAM.
  // Into L2 (prefetcht1), which keeps more misses in flight than L1: one decoded token's
  // attention over 4096 latent rows (BM_AttentionStep/4096) took 8-10 % less than with
  // prefetcht0, on one thread and on two.
  const Key* next_keys = keys + kRows * key_stride;
  for (int64_t c0 = 0; c0 < dim; c0 += 16) {
#pragma GCC unroll 24
    for (int r = 0; r < kRows; ++r) __builtin_prefetch(next_keys + r * key_stride + c0, 0, 2);
    const int64_t c1 = dim - c0 < 16 ? dim : c0 + 16;
    for (int64_t c = c0; c < c1; ++c) {
      F query_values[kVectors];
#pragma GCC unroll 2
      for (int v = 0; v < kVectors; ++v)
        query_values[v] = V::load(queries_by_dim + (c * kVectors + v) * L);
#pragma GCC unroll 24
      for (int r = 0; r < kRows; ++r) {
        const F key_value = V::set1(stored_value(keys[r * key_stride + c]));
#pragma GCC unroll 2
        for (int v = 0; v < kVectors; ++v)
          acc[v][r] = V::fma(query_values[v], key_value, acc[v][r]);
      }
    }
  }
  alignas(64) float tile[kRows][L];
  const F scale_vector = V::set1(scale);
#pragma GCC unroll 2
  for (int v = 0; v < kVectors; ++v) {
#pragma GCC unroll 24
    for (int r = 0; r < kRows; ++r) V::store(tile[r], V::mul(acc[v][r], scale_vector));
    const int n = n_queries - v * L < L ? n_queries - v * L : L;
    float* out = scores + v * L * scores_stride;
    for (int q = 0; q < n; ++q)
#pragma GCC unroll 24
      for (int r = 0; r < kRows; ++r) out[q * scores_stride + r] = tile[r][q];
  }
}

// All keys for one block of up to kVectors * L queries (queries_by_dim filled).
template <class V, int kVectors, class Key>
void scores_block(const float* queries_by_dim, const Key* keys, int64_t key_stride,
                  int64_t n_keys, int64_t dim, float scale, int n, float* out,
                  int64_t scores_stride) {
  // Keys per register tile: kVectors x kRows accumulators, the query vectors and a broadcast
  // fit the register file.
  constexpr int kRows = V::kLanes == 16 ? 12 : 8;
  int64_t s = 0;
  for (; s + kRows <= n_keys; s += kRows)
    scores_tile<V, kRows, kVectors>(queries_by_dim, keys + s * key_stride, key_stride, dim, scale,
                                    n, out + s, scores_stride);
  if (s < n_keys) {
    with_token_count<kRows - 1>(n_keys - s, [&](auto rows) {
      scores_tile<V, decltype(rows)::value, kVectors>(queries_by_dim, keys + s * key_stride,
                                                      key_stride, dim, scale, n, out + s,
                                                      scores_stride);
    });
  }
}

template <class V, class Key>
void attention_scores(const float* queries, int64_t query_stride, int64_t n_queries,
                      const Key* keys, int64_t key_stride, int64_t n_keys, int64_t dim,
                      float scale, float* scores, int64_t scores_stride) {
  constexpr int L = V::kLanes;
  // Two query vectors per tile where the registers allow (AVX-512) and the queries fill them.
  constexpr int kMaxVectors = L == 16 ? 2 : 1;
  float* queries_by_dim = thread_scratch_floats(dim * kMaxVectors * L);
  for (int64_t q0 = 0; q0 < n_queries;) {
    const int vectors = n_queries - q0 >= kMaxVectors * L ? kMaxVectors : 1;
    const int width = vectors * L;
    const int n = n_queries - q0 < width ? int(n_queries - q0) : width;
    for (int64_t c = 0; c < dim; ++c)
      for (int q = 0; q < width; ++q)
        queries_by_dim[c * width + q] = q < n ? queries[(q0 + q) * query_stride + c] : 0.0f;
    float* out = scores + q0 * scores_stride;
    if (vectors == 2) {
      scores_block<V, kMaxVectors>(queries_by_dim, keys, key_stride, n_keys, dim, scale, n, out,
                                   scores_stride);
    } else {
      scores_block<V, 1>(queries_by_dim, keys, key_stride, n_keys, dim, scale, n, out,
                         scores_stride);
    }
    q0 += n;
  }
}

// kQueries queries x kVectors vectors of output columns [c, c + kVectors * L) (the last vector
// holding last_lanes columns), accumulated over keys [s_begin, s_end) in key order onto out.
// Query q's probability of key s is probs[q * probs_stride + s]: the kQueries broadcasts of a
// key come from kQueries rows, read in place (a key-major copy of them measured 30 % slower
// for 64 columns: the copy cost as much as a quarter of the multiply-adds).
template <class V, int kQueries, int kVectors, class Value>
inline void weighted_sum_tile(const float* probs, int64_t probs_stride, const Value* values,
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
  const float* key_probs = probs + s_begin;
  const Value* row = values + s_begin * value_stride + c;
  for (int64_t s = s_begin; s < s_end; ++s, ++key_probs, row += value_stride) {
    F value[kVectors];
#pragma GCC unroll 8
    for (int j = 0; j < kVectors; ++j)
      value[j] = j + 1 < kVectors || last_lanes == L
                     ? load_stored<V>(row + j * L)
                     : load_stored_partial<V>(row + j * L, last_lanes);
#pragma GCC unroll 8
    for (int q = 0; q < kQueries; ++q) {
      const F p = V::set1(key_probs[q * probs_stride]);
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
template <class V, int kQueries, int kVectors, class Value>
inline void weighted_sum_columns(const float* probs, int64_t probs_stride, const Value* values,
                                 int64_t value_stride, int64_t dim, int64_t s_begin,
                                 int64_t s_end, float* out, int64_t out_stride) {
  constexpr int L = V::kLanes;
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

template <class V, class Value>
void attention_weighted_sum(const float* probs, int64_t probs_stride, int64_t n_queries,
                            const int64_t* key_counts, const Value* values, int64_t value_stride,
                            int64_t dim, float* out, int64_t out_stride) {
  // Register tile: kQueries x kVectors accumulators, kVectors values and a broadcast fit the
  // register file.
  constexpr int kQueries = V::kLanes == 16 ? 8 : 2;
  constexpr int kVectors = V::kLanes == 16 ? 3 : 4;
  int64_t max_count = 0;
  for (int64_t q = 0; q < n_queries; ++q) {
    for (int64_t c = 0; c < dim; ++c) out[q * out_stride + c] = 0.0f;
    max_count = key_counts[q] > max_count ? key_counts[q] : max_count;
  }
  // Key blocks outermost (each block's values stay in cache for every query); within a block a
  // tile of queries shares the keys all of them see, then each query takes its own rest.
  for (int64_t s0 = 0; s0 < max_count; s0 += kAttentionKeyBlock) {
    const int64_t s1 = max_count - s0 < kAttentionKeyBlock ? max_count : s0 + kAttentionKeyBlock;
    for (int64_t q0 = 0; q0 < n_queries; q0 += kQueries) {
      const int64_t n = n_queries - q0 < kQueries ? n_queries - q0 : kQueries;
      int64_t shared_end = s1;
      for (int64_t q = q0; q < q0 + n; ++q)
        shared_end = key_counts[q] < shared_end ? key_counts[q] : shared_end;
      if (shared_end < s0) shared_end = s0;
      with_token_count<kQueries>(n, [&](auto count) {
        weighted_sum_columns<V, decltype(count)::value, kVectors>(
            probs + q0 * probs_stride, probs_stride, values, value_stride, dim, s0, shared_end,
            out + q0 * out_stride, out_stride);
      });
      for (int64_t q = q0; q < q0 + n; ++q) {
        const int64_t end = key_counts[q] < s1 ? key_counts[q] : s1;
        weighted_sum_columns<V, 1, kVectors>(probs + q * probs_stride, probs_stride, values,
                                             value_stride, dim, shared_end, end,
                                             out + q * out_stride, out_stride);
      }
    }
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd
