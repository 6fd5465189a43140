// The two attention products of attention_ops.h on bf16 inputs: queries, keys, probabilities
// and values rounded to bf16 (round to nearest even), products summed in float, as torch runs
// attention in bfloat16. The expanded MLA form of a prefill uses them under bf16 activations
// (activation_precision.h). With AVX512_BF16 they run on vdpbf16ps, two products per lane and
// instruction (twice the float FMA rate); elsewhere the scalar references run.
//
// Keys and values are packed once per head (pack_keys_bf16, pack_values_bf16) so that a vector
// holds 16 keys (scores) or 16 value columns (weighted sum) for one pair of the summed index;
// queries and probabilities come as bf16 rows (round_rows_to_bf16).
//
// Batch invariance: a score adds its dimension pairs (2i, 2i + 1) one after another into one
// float accumulator, and a weighted-sum output its key pairs (2i, 2i + 1) likewise, so a query's
// results never depend on the other queries or keys of the call or on how they are tiled.
#pragma once

#include <cstdint>

namespace dsv3::kernels {

// Keys per block of the packed keys.
inline constexpr int64_t kBf16KeyBlock = 16;

// pack_keys_bf16's layout of n_keys keys of `dim` values: blocks of 16 keys, each
// [(dim + 1) / 2 pairs][16 keys][2], zero-padded; its size in elements.
int64_t packed_keys_elements(int64_t n_keys, int64_t dim);
// Keys of n_keys rows of `dim` values rounded to bf16 into that layout. Key s is
// [keys[s * key_stride + d] for d < first_dim, rest[s * rest_stride + d] for d < dim - first_dim]
// (two parts, as MLA's per-head no-RoPE part and shared RoPE part); first_dim = dim reads keys
// only.
void pack_keys_bf16(const float* keys, int64_t key_stride, int64_t first_dim, const float* rest,
                    int64_t rest_stride, int64_t n_keys, int64_t dim, uint16_t* packed);

// pack_values_bf16's layout of n_keys value rows of `dim` values: [(n_keys + 1) / 2 key
// pairs][dim][2], zero-padded; its size in elements.
int64_t packed_values_elements(int64_t n_keys, int64_t dim);
void pack_values_bf16(const float* values, int64_t value_stride, int64_t n_keys, int64_t dim,
                      uint16_t* packed);

// out[r * out_stride + c] = bf16(x[r * x_stride + c]) for c < cols, 0 for cols <= c <
// out_stride, r < rows (the kernels' rows: an even out_stride).
void round_rows_to_bf16(const float* x, int64_t x_stride, int64_t rows, int64_t cols,
                        uint16_t* out, int64_t out_stride);

// The softmax of row[0, n) (kernels::softmax) rounded to bf16 into probs[0, n), zeros in
// probs[n, padded): bitwise softmax then round_rows_to_bf16, the scaling and the rounding in
// one pass. `row` is left holding the softmax's numerators, or its probabilities.
void softmax_to_bf16(float* row, int64_t n, uint16_t* probs, int64_t padded);

// scores[q * scores_stride + s] = scale * sum over d < dim of queries[q][d] * keys[s][d], for
// q < n_queries, s < n_keys. queries: bf16 rows of query_stride (even) elements, zero from dim
// on (round_rows_to_bf16); keys: pack_keys_bf16 of at least n_keys keys.
void attention_scores_bf16(const uint16_t* queries, int64_t query_stride, int64_t n_queries,
                           const uint16_t* packed_keys, int64_t n_keys, int64_t dim, float scale,
                           float* scores, int64_t scores_stride);

// out[q * out_stride + c] = sum over s < key_counts[q] of probs[q][s] * values[s][c], for
// q < n_queries, c < dim (out overwritten). probs: bf16 rows of probs_stride (even) elements,
// zero from key_counts[q] on; values: pack_values_bf16 of at least every key_counts[q] rows.
void attention_weighted_sum_bf16(const uint16_t* probs, int64_t probs_stride, int64_t n_queries,
                                 const int64_t* key_counts, const uint16_t* packed_values,
                                 int64_t dim, float* out, int64_t out_stride);

// The same two products over keys and values stored as bf16 rows, row s at keys + s *
// key_stride (a bf16 latent cache: the absorbed MLA form reads it in place, nothing packed):
// scores[q * scores_stride + s] = scale * (queries[q] . keys[s]) over `dim` values, queries as
// bf16 rows (round_rows_to_bf16; query_stride >= dim). With AVX512_BF16 each score adds its
// dimension pairs in order on vdpbf16ps; elsewhere one fused multiply-add per dimension, in
// order (kernels/attention_ops.h's attention_scores on the widened values).
void attention_scores_bf16_rows(const uint16_t* queries, int64_t query_stride, int64_t n_queries,
                                const uint16_t* keys, int64_t key_stride, int64_t n_keys,
                                int64_t dim, float scale, float* scores, int64_t scores_stride);
// out[q * out_stride + c] = sum over s < key_counts[q] of probs[q * probs_stride + s] *
// values[s * value_stride + c] (out overwritten), probabilities as bf16 rows of an even
// probs_stride, zero from key_counts[q] on (softmax_to_bf16). With AVX512_BF16 each output adds
// its key pairs in order on vdpbf16ps; elsewhere attention_weighted_sum's order on the widened
// values.
void attention_weighted_sum_bf16_rows(const uint16_t* probs, int64_t probs_stride,
                                      int64_t n_queries, const int64_t* key_counts,
                                      const uint16_t* values, int64_t value_stride, int64_t dim,
                                      float* out, int64_t out_stride);

// The scalar references (double accumulation of the same bf16 values).
void attention_scores_bf16_rows_reference(const uint16_t* queries, int64_t query_stride,
                                          int64_t n_queries, const uint16_t* keys,
                                          int64_t key_stride, int64_t n_keys, int64_t dim,
                                          float scale, float* scores, int64_t scores_stride);
void attention_weighted_sum_bf16_rows_reference(const uint16_t* probs, int64_t probs_stride,
                                                int64_t n_queries, const int64_t* key_counts,
                                                const uint16_t* values, int64_t value_stride,
                                                int64_t dim, float* out, int64_t out_stride);
void attention_scores_bf16_reference(const uint16_t* queries, int64_t query_stride,
                                     int64_t n_queries, const uint16_t* packed_keys,
                                     int64_t n_keys, int64_t dim, float scale, float* scores,
                                     int64_t scores_stride);
void attention_weighted_sum_bf16_reference(const uint16_t* probs, int64_t probs_stride,
                                           int64_t n_queries, const int64_t* key_counts,
                                           const uint16_t* packed_values, int64_t dim,
                                           float* out, int64_t out_stride);

}  // namespace dsv3::kernels
