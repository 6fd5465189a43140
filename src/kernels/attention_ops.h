// The two products of scaled dot-product attention over keys and values stored as rows (the
// latent cache of MLA, or keys and values expanded per head): scores of several queries
// against every key, and the probability-weighted sum of value rows. The model calls these;
// they know nothing of heads or layers. Scalar references beside the fast paths.
//
// Batch invariance: each score sums its products one after another in dimension order with
// fused multiply-adds (then times scale), and each output lane sums its keys one after another
// in key order with fused multiply-adds, so a query's results never depend on the other
// queries of the call, on how the keys are blocked or on the thread that runs it.
#pragma once

#include <cstdint>

namespace dsv3::kernels {

// scores[q * scores_stride + s] = scale * (queries[q] . keys[s]) over `dim` values, for
// q < n_queries, s < n_keys; query q starts at queries + q * query_stride, key s at
// keys + s * key_stride.
void attention_scores(const float* queries, int64_t query_stride, int64_t n_queries,
                      const float* keys, int64_t key_stride, int64_t n_keys, int64_t dim,
                      float scale, float* scores, int64_t scores_stride);

// out[q * out_stride + c] = sum over s < key_counts[q] of probs[q * probs_stride + s] *
// values[s * value_stride + c], for q < n_queries, c < dim (out overwritten).
void attention_weighted_sum(const float* probs, int64_t probs_stride, int64_t n_queries,
                            const int64_t* key_counts, const float* values, int64_t value_stride,
                            int64_t dim, float* out, int64_t out_stride);

// The scalar references (double accumulation).
void attention_scores_reference(const float* queries, int64_t query_stride, int64_t n_queries,
                                const float* keys, int64_t key_stride, int64_t n_keys,
                                int64_t dim, float scale, float* scores, int64_t scores_stride);
void attention_weighted_sum_reference(const float* probs, int64_t probs_stride, int64_t n_queries,
                                      const int64_t* key_counts, const float* values,
                                      int64_t value_stride, int64_t dim, float* out,
                                      int64_t out_stride);

}  // namespace dsv3::kernels
