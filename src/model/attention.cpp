#include "model/attention.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "kernels/activation_precision.h"
#include "kernels/attention_bf16.h"
#include "kernels/attention_ops.h"
#include "kernels/head_matvec.h"
#include "kernels/matmul.h"
#include "kernels/matmul_transposed.h"
#include "kernels/ops.h"
#include "model/row_ranges.h"
#include "tensor/thread_pool.h"
#include "util/error.h"
#include "util/phase_profile.h"
#include "util/scratch.h"

namespace dsv3 {

namespace {

// The products whose inputs differ between the absorbed and expanded MLA forms (W_UK^T q_nope,
// W_UV latent, kv_b_proj latent) keep float activations: rounded to bf16, the two forms would
// disagree far beyond float rounding and a token's result would depend on its batch's form.
// (AttentionPrecision::kBf16 accepts that for the expanded form: see attention.h.)
constexpr bool kFloatActivations = true;

void add_bias(float* rows, int64_t n_rows, const std::vector<float>& bias) {
  if (bias.empty()) return;
  const int64_t width = int64_t(bias.size());
  for (int64_t t = 0; t < n_rows; ++t)
    for (int64_t i = 0; i < width; ++i) rows[t * width + i] += bias[i];
}

void linear(const Linear& layer, const float* x, int64_t tokens, float* out) {
  kernels::matmul(layer.weight, x, tokens, out);
  add_bias(out, tokens, layer.bias);
}

// The dimensions of one layer's attention.
struct Shape {
  int64_t heads, nope, rope, head_dim, v, rank;
  explicit Shape(const Config& c)
      : heads(c.num_attention_heads),
        nope(c.qk_nope_head_dim),
        rope(c.qk_rope_head_dim),
        head_dim(c.qk_head_dim()),
        v(c.v_head_dim),
        rank(c.kv_lora_rank) {}
};

// Consecutive tokens of the batch that belong to one sequence (one cache).
struct Group {
  int64_t first, count;
  const LatentCache* cache;
  int64_t visible_slots;  // slots the last token of the group sees
  AttentionMode mode;     // the form asked for (kAuto: the cheaper one)
};

// The form token t's sequence asks for: the batch's, unless that is kAuto and the sequences
// ask for their own.
AttentionMode asked_mode(const TokenBatch& batch, int64_t t) {
  return batch.mode != AttentionMode::kAuto || !batch.sequence_modes ? batch.mode
                                                                      : batch.sequence_modes[t];
}

std::vector<Group> group_by_cache(const TokenBatch& batch) {
  std::vector<Group> groups;
  for (int64_t t = 0; t < batch.tokens; ++t) {
    if (groups.empty() || groups.back().cache != batch.caches[t])
      groups.push_back({t, 0, batch.caches[t], 0, asked_mode(batch, t)});
    groups.back().count++;
    groups.back().visible_slots = std::max(groups.back().visible_slots, batch.slots[t] + 1);
  }
  return groups;
}

// Token t's scores of its padding slots (key_masks) to -inf.
void mask_padding(const TokenBatch& batch, int64_t t, float* scores, int64_t visible) {
  if (const uint8_t* mask = batch.key_masks ? batch.key_masks[t] : nullptr)
    for (int64_t slot = 0; slot < visible; ++slot)
      if (!mask[slot]) scores[slot] = -std::numeric_limits<float>::infinity();
}

// Token t's scores over slots [0, visible) -> attention weights: padding slots get none, a
// token that sees no slot gets all zeros (kernels::softmax); recorded for output_attentions.
void attention_probabilities(const TokenBatch& batch, int64_t t, int64_t h, int64_t heads,
                             float* scores, int64_t visible) {
  mask_padding(batch, t, scores, visible);
  kernels::softmax(scores, visible);
  if (batch.attention_weights)
    std::copy_n(scores, visible,
                batch.attention_weights + (t * heads + h) * batch.attention_key_count);
}

// The same rounded to bf16 into probs[0, visible), zeros in probs[visible, padded).
void attention_probabilities_bf16(const TokenBatch& batch, int64_t t, int64_t h, int64_t heads,
                                  float* scores, int64_t visible, uint16_t* probs,
                                  int64_t padded) {
  if (batch.attention_weights) {
    attention_probabilities(batch, t, h, heads, scores, visible);
    kernels::round_rows_to_bf16(scores, visible, 1, visible, probs, padded);
    return;
  }
  mask_padding(batch, t, scores, visible);
  kernels::softmax_to_bf16(scores, visible, probs, padded);
}

// Multiply-adds of each form for one group (per head); the cheaper one is used in kAuto.
bool expanded_is_cheaper(const Shape& s, const Group& group) {
  const double tokens = double(group.count), slots = double(group.visible_slots);
  const double absorbed = tokens * s.rank * (s.nope + s.v) + tokens * slots * (2.0 * s.rank + s.rope);
  const double expanded = slots * s.rank * (s.nope + s.v) + tokens * slots * (s.nope + s.rope + s.v);
  return expanded < absorbed;
}

// The form a group is attended in: the one asked for, else the cheaper.
AttentionMode form_of(const Shape& s, const Group& group) {
  if (group.mode != AttentionMode::kAuto) return group.mode;
  return expanded_is_cheaper(s, group) ? AttentionMode::kExpanded : AttentionMode::kAbsorbed;
}

// Token t's latent (kv_a_layernorm of the first kv_lora_rank values of its kv_a_proj row kv_t)
// and its rope key (the rest, rotated by its position) into its cache slot.
void write_latent(const Shape& s, const AttentionWeights& w, const Rope& rope, int64_t layer,
                  const TokenBatch& batch, int64_t t, const float* kv_t) {
  thread_local std::vector<float> row;
  float* slot = grow_scratch(row, s.rank + s.rope);
  kernels::rms_norm(kv_t, w.kv_a_layernorm.weight.data(), s.rank, w.kv_a_layernorm.eps, slot);
  std::copy(kv_t + s.rank, kv_t + s.rank + s.rope, slot + s.rank);
  rope.apply(batch.rotations[t], slot + s.rank, 1, s.rope);
  batch.caches[t]->write_row(layer, batch.slots[t], slot);
}

// Buffers of one attention call, grown on demand and kept by the thread: once warm, a decode
// step allocates nothing.
struct AttentionScratch {
  std::vector<float> q, q_latent, kv, attention_out;
  std::vector<float> q_nope_heads, q_absorbed_heads, queries, latent_out, latent_heads, value_heads;
  std::vector<float> latents, rope_keys, keys_values, keys, values;
  std::vector<uint16_t> packed_keys, packed_values;  // attend_expanded in bf16, per head
  std::vector<float> long_partials, long_chunk_stats;  // attend_long_context
  std::vector<int64_t> short_tokens;
  std::vector<kernels::MatmulItem> products;
  std::vector<kernels::TransposedMatmulItem> transposed_products;
};

AttentionScratch& attention_scratch() {
  thread_local AttentionScratch scratch;
  return scratch;
}

// Scores and probabilities of some queries, their buffer kept per thread (the pool's too).
std::vector<float>& thread_scores(int64_t size) {
  thread_local std::vector<float> scores;
  if (int64_t(scores.size()) < size) scores.resize(size);
  return scores;
}

// The queries of one block of one head, gathered into consecutive rows.
std::vector<float>& thread_block_queries(int64_t size) {
  thread_local std::vector<float> queries;
  if (int64_t(queries.size()) < size) queries.resize(size);
  return queries;
}

// The bf16 rows of a block's queries or probabilities (attend_expanded in bf16).
std::vector<uint16_t>& thread_bf16_rows(int64_t size) {
  thread_local std::vector<uint16_t> rows;
  if (int64_t(rows.size()) < size) rows.resize(size);
  return rows;
}

std::vector<int64_t>& thread_key_counts(int64_t size) {
  thread_local std::vector<int64_t> counts;
  if (int64_t(counts.size()) < size) counts.resize(size);
  return counts;
}

// The absorbed form's scores of n_queries queries (rows of the cache's row size) against a
// layer's cache rows [first, first + n_keys), in the cache's element: float rows with float
// queries, bf16 rows with the queries rounded to bf16 (kernels/attention_bf16.h).
void cache_scores(const LatentCache& cache, int64_t layer, int64_t first, const float* queries,
                  int64_t n_queries, int64_t n_keys, float scale, float* scores,
                  int64_t scores_stride) {
  const int64_t row_size = cache.row_size();
  if (!cache.holds_bf16()) {
    kernels::attention_scores(queries, row_size, n_queries, cache.f32_row(layer, first), row_size,
                              n_keys, row_size, scale, scores, scores_stride);
    return;
  }
  thread_local std::vector<uint16_t> query_rows;
  const int64_t query_stride = (row_size + 1) / 2 * 2;
  grow_scratch(query_rows, n_queries * query_stride);
  kernels::round_rows_to_bf16(queries, row_size, n_queries, row_size, query_rows.data(),
                              query_stride);
  kernels::attention_scores_bf16_rows(query_rows.data(), query_stride, n_queries,
                                      cache.bf16_row(layer, first), row_size, n_keys, row_size,
                                      scale, scores, scores_stride);
}

// The weighted sums of the latents (the first cache.latent_dim() values) of a layer's cache rows
// from `first` on: out[q][c] = sum over s < key_counts[q] of probs[q][s] latent[first + s][c],
// the probabilities rounded to bf16 over a bf16 cache.
void cache_weighted_sum(const LatentCache& cache, int64_t layer, int64_t first,
                        const float* probs, int64_t probs_stride, int64_t n_queries,
                        const int64_t* key_counts, float* out, int64_t out_stride) {
  if (cache.holds_bf16()) {
    // The probabilities as bf16 rows of an even length, zero past each query's count.
    int64_t longest = 0;
    for (int64_t q = 0; q < n_queries; ++q) longest = std::max(longest, key_counts[q]);
    const int64_t rows_stride = (longest + 1) / 2 * 2;
    thread_local std::vector<uint16_t> prob_rows;
    grow_scratch(prob_rows, n_queries * rows_stride);
    for (int64_t q = 0; q < n_queries; ++q)
      kernels::round_rows_to_bf16(probs + q * probs_stride, probs_stride, 1, key_counts[q],
                                  prob_rows.data() + q * rows_stride, rows_stride);
    kernels::attention_weighted_sum_bf16_rows(prob_rows.data(), rows_stride, n_queries,
                                              key_counts, cache.bf16_row(layer, first),
                                              cache.row_size(), cache.latent_dim(), out,
                                              out_stride);
  } else {
    kernels::attention_weighted_sum(probs, probs_stride, n_queries, key_counts,
                                    cache.f32_row(layer, first), cache.row_size(),
                                    cache.latent_dim(), out, out_stride);
  }
}

// From this many visible cache rows on, a token's attention splits the rows over the threads
// (attend_long_context) instead of its heads.
constexpr int64_t kLongContextKeys = 1024;
// Rows per piece of a long context: fixed, so the sums do not depend on the thread count; small
// enough that a piece (512 x 320 floats) is still in L2 when its weighted sum reads it again.
constexpr int64_t kContextChunk = 512;

// Absorbed attention of token t over `visible` cache rows, all heads at once, the rows cut in
// chunks the threads take in turn, each chunk's rows read from memory once (flash-decoding):
// per chunk all heads' scores, their softmax numerators exp(score - chunk max) and the
// numerator-weighted sum of the chunk's rows; then per head the chunks' sums rescaled to the
// overall max and divided by the overall denominator, added in chunk order. Giving each thread
// a share of the heads instead has every thread read every row, and a softmax over all rows
// before the weighted sum reads every row a second time from memory.
void attend_long_context(const Shape& s, const TokenBatch& batch, int64_t t, int64_t visible,
                         const float* queries, const LatentCache& cache, int64_t layer,
                         float scale, float* latent_out) {
  AttentionScratch& scratch = attention_scratch();
  const int64_t chunks = (visible + kContextChunk - 1) / kContextChunk;
  std::vector<float>& partial_sums = scratch.long_partials;    // [chunk][head][rank]
  std::vector<float>& chunk_stats = scratch.long_chunk_stats;  // [chunk][head]: max, then sum
  partial_sums.resize(chunks * s.heads * s.rank);
  chunk_stats.resize(2 * chunks * s.heads);
  float* chunk_max = chunk_stats.data();
  float* chunk_sum = chunk_stats.data() + chunks * s.heads;
  const uint8_t* mask = batch.key_masks ? batch.key_masks[t] : nullptr;
  ThreadPool::global().parallel_claim(chunks, [&](int64_t chunk) {
    const int64_t first = chunk * kContextChunk, count = std::min(kContextChunk, visible - first);
    float* scores = thread_scores(s.heads * count).data();  // [head][row of the chunk]
    cache_scores(cache, layer, first, queries, s.heads, count, scale, scores, count);
    for (int64_t h = 0; h < s.heads; ++h) {
      float* head_scores = scores + h * count;
      if (mask)
        for (int64_t i = 0; i < count; ++i)
          if (!mask[first + i]) head_scores[i] = -std::numeric_limits<float>::infinity();
      kernels::softmax_numerators(head_scores, count, &chunk_max[chunk * s.heads + h],
                                  &chunk_sum[chunk * s.heads + h]);
    }
    int64_t* key_counts = thread_key_counts(s.heads).data();
    std::fill_n(key_counts, s.heads, count);
    cache_weighted_sum(cache, layer, first, scores, count, s.heads, key_counts,
                       partial_sums.data() + chunk * s.heads * s.rank, s.rank);
  });
  for (int64_t h = 0; h < s.heads; ++h) {
    float* out = latent_out + h * s.rank;
    std::fill_n(out, s.rank, 0.0f);
    float overall_max = -std::numeric_limits<float>::infinity();
    for (int64_t chunk = 0; chunk < chunks; ++chunk)
      overall_max = std::max(overall_max, chunk_max[chunk * s.heads + h]);
    if (overall_max == -std::numeric_limits<float>::infinity()) continue;  // all masked: zeros
    // A chunk's numerators were taken against its own max: exp(chunk max - overall max) puts
    // them on the common scale (0 for a fully masked chunk).
    float denominator = 0.0f;
    for (int64_t chunk = 0; chunk < chunks; ++chunk)
      denominator +=
          std::exp(chunk_max[chunk * s.heads + h] - overall_max) * chunk_sum[chunk * s.heads + h];
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const float weight = std::exp(chunk_max[chunk * s.heads + h] - overall_max) / denominator;
      kernels::axpy(weight, partial_sums.data() + (chunk * s.heads + h) * s.rank, out, s.rank);
    }
  }
}

// W_UK^T q_nope of head h for `tokens` rows of q_nope ([tokens][nope] -> out [tokens][rank]),
// on the calling thread (inside a pass of the pool, the products run inline). `next`: the
// packed matrix the thread multiplies next, prefetched meanwhile.
void absorb_key(const AttentionWeights& w, int64_t h, const float* q_nope, int64_t tokens,
                float* out, const kernels::PackedHeadMatrix* next = nullptr) {
  if (!w.key_heads.empty())
    return kernels::head_matvec(w.key_heads[h], q_nope, tokens, out, next ? next->data : nullptr,
                                next ? next->bytes() : 0);
  if (w.key_absorb_in_place) {
    const kernels::TransposedMatmulItem item{&w.key_absorb[h], q_nope, tokens, out};
    return kernels::matmul_transposed_group(std::span(&item, 1));
  }
  if (tokens == 1) return kernels::matvec_f32_activations_here(w.key_absorb[h], q_nope, out);
  kernels::matmul_f32_activations(w.key_absorb[h], q_nope, tokens, out);
}

// W_UV of head h times `tokens` weighted latents ([tokens][rank] -> out [tokens][v]), on the
// calling thread.
void up_value(const AttentionWeights& w, int64_t h, const float* latents, int64_t tokens,
              float* out, const kernels::PackedHeadMatrix* next = nullptr) {
  if (!w.value_heads.empty())
    return kernels::head_matvec(w.value_heads[h], latents, tokens, out,
                                next ? next->data : nullptr, next ? next->bytes() : 0);
  if (tokens == 1) return kernels::matvec_f32_activations_here(w.value_up[h], latents, out);
  kernels::matmul_f32_activations(w.value_up[h], latents, tokens, out);
}

// fn(h, first token, tokens) over every head and chunk of tokens, claimed by whichever thread is
// free (packed per-head products: each computes its own rows on the calling thread).
template <class Fn>
void for_head_token_chunks(int64_t heads, int64_t tokens, Fn&& fn) {
  constexpr int64_t kChunkTokens = 32;
  const int64_t chunks = (tokens + kChunkTokens - 1) / kChunkTokens;
  ThreadPool::global().parallel_claim(heads * chunks, [&](int64_t unit) {
    const int64_t h = unit / chunks, i0 = (unit % chunks) * kChunkTokens;
    fn(h, i0, std::min(kChunkTokens, tokens - i0));
  });
}

// The first weight bytes a unit of heads from h0 reads after q_b_proj (its first W_UK^T).
std::pair<const void*, int64_t> first_key_bytes(const AttentionWeights& w, int64_t h0) {
  if (!w.key_heads.empty()) return {w.key_heads[h0].data, w.key_heads[h0].bytes()};
  const WeightMatrix& key = w.key_absorb[h0];
  return {key.data, key.rows * key.row_bytes()};
}

// The queries of heads [h0, h1) of one token (q_t: its [heads][head_dim]) laid out as cache
// rows, [W_UK^T q_nope, q_rope], one product per head on the calling thread.
void absorb_query_heads(const Shape& s, const AttentionWeights& w, const float* q_t, int64_t h0,
                        int64_t h1, float* queries) {
  const int64_t row_size = s.rank + s.rope;
  for (int64_t h = h0; h < h1; ++h) {
    const float* q_nope = q_t + h * s.head_dim;
    float* query = queries + (h - h0) * row_size;
    // Packed: each W_UK^T prefetches the next, the last the unit's first W_UV (read after the
    // attention over the cache).
    const kernels::PackedHeadMatrix* next = nullptr;
    if (!w.key_heads.empty()) next = h + 1 < h1 ? &w.key_heads[h + 1] : &w.value_heads[h0];
    absorb_key(w, h, q_nope, 1, query, next);
    std::copy_n(q_nope + s.nope, s.rope, query + s.rank);
  }
}

// Heads [h0, h1) of token t in the absorbed form, on the calling thread: their query
// absorption, attention over the token's `visible` cache rows, and W_UV.
void attend_head_unit(const Shape& s, const AttentionWeights& w, int64_t layer,
                      const LatentCache& cache, const TokenBatch& batch, int64_t t,
                      int64_t visible, const float* q_t, int64_t h0, int64_t h1, float scale,
                      float* attention_out) {
  const int64_t n_heads = h1 - h0, row_size = s.rank + s.rope;
  // Per thread: the unit's queries and weighted latents.
  thread_local std::vector<float> queries, latents;
  absorb_query_heads(s, w, q_t, h0, h1, grow_scratch(queries, n_heads * row_size));
  float* scores = thread_scores(n_heads * visible).data();
  int64_t* key_counts = thread_key_counts(n_heads).data();
  cache_scores(cache, layer, 0, queries.data(), n_heads, visible, scale, scores, visible);
  for (int64_t h = h0; h < h1; ++h) {
    attention_probabilities(batch, t, h, s.heads, scores + (h - h0) * visible, visible);
    key_counts[h - h0] = visible;
  }
  cache_weighted_sum(cache, layer, 0, scores, visible, n_heads, key_counts,
                     grow_scratch(latents, n_heads * s.rank), s.rank);
  for (int64_t h = h0; h < h1; ++h)
    up_value(w, h, latents.data() + (h - h0) * s.rank, 1, attention_out + (t * s.heads + h) * s.v,
             !w.value_heads.empty() && h + 1 < h1 ? &w.value_heads[h + 1] : nullptr);
}

// The heads of one unit of a single token's attention: as many as make each thread one unit.
int64_t heads_per_unit(const Shape& s) {
  const int64_t threads = ThreadPool::global().num_threads();
  return (s.heads + threads - 1) / threads;
}

// fn(h0, h1) for every unit of heads [h0, h1), each unit claimed by whichever thread is free.
template <class Fn>
void for_each_head_unit(const Shape& s, Fn&& fn) {
  const int64_t unit_heads = heads_per_unit(s);
  const int64_t units = (s.heads + unit_heads - 1) / unit_heads;
  ThreadPool::global().parallel_claim(units, [&](int64_t unit) {
    const int64_t h0 = unit * unit_heads;
    fn(h0, std::min(s.heads, h0 + unit_heads));
  });
}

// One token of the absorbed form that sees fewer than kLongContextKeys slots: each thread takes
// a share of the heads and runs their query absorption, attention and W_UV alone (one pass of
// the pool instead of three, the products the same to the bit: every product is batch
// invariant). A decode step's 16 heads of the bench shape took 27-36 us per layer in three
// passes, against 12 us for their 1 MB of weights at the machine's bandwidth.
void attend_absorbed_token(const Shape& s, const AttentionWeights& w, int64_t layer,
                           const Group& group, const TokenBatch& batch, const float* q,
                           float scale, float* attention_out) {
  profile::Phase phase("attn.attend");
  const int64_t t = group.first, visible = batch.slots[t] + 1;
  for_each_head_unit(s, [&](int64_t h0, int64_t h1) {
    attend_head_unit(s, w, layer, *group.cache, batch, t, visible, q + t * s.heads * s.head_dim,
                     h0, h1, scale, attention_out);
  });
}

// Whether a batch is one decode token that attend_query_heads serves: the absorbed form over
// fewer than kLongContextKeys slots, with q_b_proj's rows of every unit of heads computable
// apart (kernels::matmul_rows_here).
bool attends_per_head_unit(const Config& config, const Shape& s, const AttentionWeights& w,
                           const TokenBatch& batch) {
  if (batch.tokens != 1 || !config.q_lora_rank || batch.slots[0] + 1 >= kLongContextKeys)
    return false;
  const Group token{0, 1, batch.caches[0], batch.slots[0] + 1, asked_mode(batch, 0)};
  if (form_of(s, token) != AttentionMode::kAbsorbed) return false;
  return (heads_per_unit(s) * s.head_dim) % kernels::matmul_row_step(w.q_b_proj) == 0;
}

// One decode token from its normed q_a_proj row: each thread takes a unit of heads and runs
// their rows of q_b_proj, the rotation of their rope parts and their attention
// (attend_head_unit) alone, in one pass of the pool. The token's latent must be in the cache.
void attend_query_heads(const Shape& s, const Rope& rope, const AttentionWeights& w,
                        int64_t layer, const TokenBatch& batch, const float* q_latent, float* q,
                        float scale, float* attention_out) {
  profile::Phase phase("attn.q_b+attend");
  const int64_t visible = batch.slots[0] + 1;
  for_each_head_unit(s, [&](int64_t h0, int64_t h1) {
    // The weight stream runs on into the unit's first W_UK^T, which the thread reads next.
    const auto [key_first, key_bytes] = first_key_bytes(w, h0);
    kernels::matmul_rows_here(w.q_b_proj, q_latent, 1, h0 * s.head_dim, h1 * s.head_dim, q,
                              key_first, key_bytes);
    rope.apply(batch.rotations[0], q + h0 * s.head_dim + s.nope, h1 - h0, s.head_dim);
    attend_head_unit(s, w, layer, *batch.caches[0], batch, 0, visible, q, h0, h1, scale,
                     attention_out);
  });
}

// Absorbed: score(t, s) = (W_UK^T q_nope) . latent_s + q_rope . k_rope_s; the output is
// W_UV (sum_s p_s latent_s). Nothing per head is ever expanded from the cache.
void attend_absorbed(const Shape& s, const AttentionWeights& w, int64_t layer, const Group& group,
                     const TokenBatch& batch, const float* q, float scale, float* attention_out) {
  if (group.count == 1 && batch.slots[group.first] + 1 < kLongContextKeys)
    return attend_absorbed_token(s, w, layer, group, batch, q, scale, attention_out);
  AttentionScratch& scratch = attention_scratch();
  profile::Phase phase("attn.absorb_q");
  const int64_t tokens = group.count;
  // Per head: q_nope of every token [h][tokens][nope] -> W_UK^T q_nope [h][tokens][rank], all
  // heads in one pass of the pool.
  grow_scratch(scratch.q_nope_heads, s.heads * tokens * s.nope);
  grow_scratch(scratch.q_absorbed_heads, s.heads * tokens * s.rank);
  scratch.products.clear();
  scratch.transposed_products.clear();
  for (int64_t h = 0; h < s.heads; ++h) {
    float* q_nope_head = scratch.q_nope_heads.data() + h * tokens * s.nope;
    for (int64_t i = 0; i < tokens; ++i)
      std::copy_n(q + ((group.first + i) * s.heads + h) * s.head_dim, s.nope,
                  q_nope_head + i * s.nope);
    float* q_absorbed_head = scratch.q_absorbed_heads.data() + h * tokens * s.rank;
    if (!w.key_heads.empty()) continue;  // packed: for_head_token_chunks below
    if (w.key_absorb_in_place) {
      scratch.transposed_products.push_back(
          {&w.key_absorb[h], q_nope_head, tokens, q_absorbed_head});
    } else {
      scratch.products.push_back({&w.key_absorb[h], q_nope_head, tokens, q_absorbed_head,
                                  kFloatActivations});
    }
  }
  kernels::matmul_group(scratch.products);
  kernels::matmul_transposed_group(scratch.transposed_products);
  if (!w.key_heads.empty())
    for_head_token_chunks(s.heads, tokens, [&](int64_t h, int64_t i0, int64_t n) {
      absorb_key(w, h, scratch.q_nope_heads.data() + (h * tokens + i0) * s.nope, n,
                 scratch.q_absorbed_heads.data() + (h * tokens + i0) * s.rank);
    });
  phase.next("attn.attend");

  // One query per token and head laid out as a cache row, [W_UK^T q_nope, q_rope]: a score is
  // then one dot product with the row [latent_s, k_rope_s].
  const int64_t row_size = s.rank + s.rope;
  grow_scratch(scratch.queries, tokens * s.heads * row_size);
  for (int64_t i = 0; i < tokens; ++i)
    for (int64_t h = 0; h < s.heads; ++h) {
      float* query = scratch.queries.data() + (i * s.heads + h) * row_size;
      std::copy_n(scratch.q_absorbed_heads.data() + (h * tokens + i) * s.rank, s.rank, query);
      std::copy_n(q + ((group.first + i) * s.heads + h) * s.head_dim + s.nope, s.rope,
                  query + s.rank);
    }

  // A token that sees many cached rows (a long context) splits them instead of its heads: see
  // attend_long_context. The others go in units of (token, heads_per_unit heads) claimed by
  // whichever thread is free: a unit's heads share one pass over the cache rows, so there are
  // as few as keep every thread busy (one per thread for a single token). Each head's scores and
  // sums are the same whatever its unit.
  const int64_t threads = ThreadPool::global().num_threads();
  const int64_t heads_per_unit = (s.heads + threads - 1) / threads;
  const int64_t head_units = (s.heads + heads_per_unit - 1) / heads_per_unit;
  grow_scratch(scratch.latent_out, tokens * s.heads * s.rank);
  std::vector<int64_t>& short_tokens = scratch.short_tokens;
  short_tokens.clear();
  for (int64_t i = 0; i < tokens; ++i) {
    const int64_t t = group.first + i, visible = batch.slots[t] + 1;
    if (visible >= kLongContextKeys && batch.attention_weights == nullptr) {
      attend_long_context(s, batch, t, visible, scratch.queries.data() + i * s.heads * row_size,
                          *group.cache, layer, scale,
                          scratch.latent_out.data() + i * s.heads * s.rank);
    } else {
      short_tokens.push_back(i);
    }
  }
  ThreadPool::global().parallel_claim(int64_t(short_tokens.size()) * head_units, [&](int64_t unit) {
    const int64_t i = short_tokens[size_t(unit / head_units)];
    const int64_t h0 = (unit % head_units) * heads_per_unit;
    const int64_t h1 = std::min(s.heads, h0 + heads_per_unit);
    const int64_t n_heads = h1 - h0, t = group.first + i;
    const int64_t visible = batch.slots[t] + 1;  // causal: slots [0, slot]
    float* scores = thread_scores(n_heads * visible).data();
    int64_t* key_counts = thread_key_counts(n_heads).data();
    cache_scores(*group.cache, layer, 0, scratch.queries.data() + (i * s.heads + h0) * row_size,
                 n_heads, visible, scale, scores, visible);
    for (int64_t h = h0; h < h1; ++h) {
      attention_probabilities(batch, t, h, s.heads, scores + (h - h0) * visible, visible);
      key_counts[h - h0] = visible;
    }
    cache_weighted_sum(*group.cache, layer, 0, scores, visible, n_heads, key_counts,
                       scratch.latent_out.data() + (i * s.heads + h0) * s.rank, s.rank);
  });

  phase.next("attn.value_up");
  // Per head: W_UV times the weighted latent, all heads in one pass of the pool.
  grow_scratch(scratch.latent_heads, s.heads * tokens * s.rank);
  grow_scratch(scratch.value_heads, s.heads * tokens * s.v);
  scratch.products.clear();
  for (int64_t h = 0; h < s.heads; ++h) {
    float* latent_head = scratch.latent_heads.data() + h * tokens * s.rank;
    for (int64_t i = 0; i < tokens; ++i)
      std::copy_n(scratch.latent_out.data() + (i * s.heads + h) * s.rank, s.rank,
                  latent_head + i * s.rank);
    if (w.value_heads.empty())
      scratch.products.push_back({&w.value_up[h], latent_head, tokens,
                                  scratch.value_heads.data() + h * tokens * s.v,
                                  kFloatActivations});
  }
  kernels::matmul_group(scratch.products);
  if (!w.value_heads.empty())
    for_head_token_chunks(s.heads, tokens, [&](int64_t h, int64_t i0, int64_t n) {
      up_value(w, h, scratch.latent_heads.data() + (h * tokens + i0) * s.rank, n,
               scratch.value_heads.data() + (h * tokens + i0) * s.v);
    });
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t i = 0; i < tokens; ++i)
      std::copy_n(scratch.value_heads.data() + (h * tokens + i) * s.v, s.v,
                  attention_out + ((group.first + i) * s.heads + h) * s.v);
}

// Expanded: keys [k_nope = W_UK latent_s, k_rope_s] and values W_UV latent_s per head, then
// ordinary attention (what transformers computes).
void attend_expanded(const Shape& s, const AttentionWeights& w, int64_t layer, const Group& group,
                     const TokenBatch& batch, const float* q, float scale, float* attention_out) {
  AttentionScratch& scratch = attention_scratch();
  const int64_t slots = group.visible_slots;
  // The cached latents and rope keys as floats: [slot][rank] and [slot][rope].
  grow_scratch(scratch.latents, slots * s.rank);
  grow_scratch(scratch.rope_keys, slots * s.rope);
  group.cache->read_rows(layer, 0, slots, 0, s.rank, scratch.latents.data(), s.rank);
  group.cache->read_rows(layer, 0, slots, s.rank, s.rope, scratch.rope_keys.data(), s.rope);
  const int64_t kv_width = s.heads * (s.nope + s.v);
  grow_scratch(scratch.keys_values, slots * kv_width);  // [slot][head][nope + v]
  profile::Phase phase("attn.kv_b");
  const bool bf16 = attention_precision() == AttentionPrecision::kBf16 &&
                    kernels::rounds_activations_to_bf16(w.kv_b_proj);
  // Per head, contiguous rows: keys [h][slot][nope + rope] (laid out as the queries) and
  // values [h][slot][v]; in bf16, rounded and packed for the vdpbf16ps products instead.
  const int64_t packed_key_elements = kernels::packed_keys_elements(slots, s.head_dim);
  const int64_t packed_value_elements = kernels::packed_values_elements(slots, s.v);
  if (bf16) {
    // In chunks of slots (whole blocks of packed keys, at most 64, at least two per thread),
    // each thread taking whole chunks: a chunk's keys and values (512 KB for 64 slots of the
    // bench shape) are packed while they are still in the core's L2, where the whole product's
    // (4 MB) went through L3. A 512-token prefill of the bench shape: kv_b and packing 11.4-12.7
    // -> 8.8-9.1 ms.
    grow_scratch(scratch.packed_keys, s.heads * packed_key_elements);
    grow_scratch(scratch.packed_values, s.heads * packed_value_elements);
    constexpr int64_t kBlock = kernels::kBf16KeyBlock, kMaxChunkSlots = 64;
    const int64_t threads = ThreadPool::global().num_threads();
    const int64_t chunk_slots = std::clamp<int64_t>(
        (slots + 2 * threads * kBlock - 1) / (2 * threads * kBlock) * kBlock, kBlock,
        kMaxChunkSlots);
    ThreadPool::global().parallel_claim((slots + chunk_slots - 1) / chunk_slots, [&](int64_t c) {
      const int64_t first = c * chunk_slots, count = std::min(chunk_slots, slots - first);
      float* chunk = scratch.keys_values.data() + first * kv_width;
      kernels::matmul(w.kv_b_proj, scratch.latents.data() + first * s.rank, count, chunk);
      for (int64_t h = 0; h < s.heads; ++h) {
        const float* expanded = chunk + h * (s.nope + s.v);
        kernels::pack_keys_bf16(expanded, kv_width, s.nope,
                                scratch.rope_keys.data() + first * s.rope, s.rope, count,
                                s.head_dim,
                                scratch.packed_keys.data() + h * packed_key_elements +
                                    kernels::packed_keys_elements(first, s.head_dim));
        kernels::pack_values_bf16(expanded + s.nope, kv_width, count, s.v,
                                  scratch.packed_values.data() + h * packed_value_elements +
                                      kernels::packed_values_elements(first, s.v));
      }
    });
  } else {
    kernels::matmul_f32_activations(w.kv_b_proj, scratch.latents.data(), slots,
                                    scratch.keys_values.data());
    grow_scratch(scratch.keys, s.heads * slots * s.head_dim);
    grow_scratch(scratch.values, s.heads * slots * s.v);
    ThreadPool::global().parallel_for(slots, [&](int64_t begin, int64_t end) {
      for (int64_t slot = begin; slot < end; ++slot) {
        const float* key_rope = scratch.rope_keys.data() + slot * s.rope;
        for (int64_t h = 0; h < s.heads; ++h) {
          const float* expanded = scratch.keys_values.data() + slot * kv_width + h * (s.nope + s.v);
          float* key = scratch.keys.data() + (h * slots + slot) * s.head_dim;
          std::copy_n(expanded, s.nope, key);
          std::copy_n(key_rope, s.rope, key + s.nope);
          std::copy_n(expanded + s.nope, s.v, scratch.values.data() + (h * slots + slot) * s.v);
        }
      }
    });
  }

  // Tasks of (head, block of queries): the scores of a block against the keys its last token
  // sees, then each token's own causal count of them.
  phase.next("attn.attend");
  constexpr int64_t kQueryBlock = 32;
  const int64_t blocks = (group.count + kQueryBlock - 1) / kQueryBlock;
  const int64_t out_stride = s.heads * s.v;
  ThreadPool::global().parallel_claim(s.heads * blocks, [&](int64_t task) {
    const int64_t h = task / blocks, i0 = (task % blocks) * kQueryBlock;
    const int64_t n = std::min(kQueryBlock, group.count - i0);
    int64_t keys_seen = 0;
    for (int64_t i = i0; i < i0 + n; ++i)
      keys_seen = std::max(keys_seen, batch.slots[group.first + i] + 1);
    float* scores = thread_scores(n * keys_seen).data();
    int64_t* key_counts = thread_key_counts(n).data();
    const int64_t t0 = group.first + i0;
    // The block's queries lie heads * head_dim floats apart (8 KB for 16 heads of 128: all in
    // the same L1 sets); gathered, the block's attention runs 8 % faster.
    float* queries = thread_block_queries(n * s.head_dim).data();
    for (int64_t j = 0; j < n; ++j)
      std::copy_n(q + ((t0 + j) * s.heads + h) * s.head_dim, s.head_dim, queries + j * s.head_dim);
    float* out = attention_out + (t0 * s.heads + h) * s.v;
    if (!bf16) {
      kernels::attention_scores(queries, s.head_dim, n,
                                scratch.keys.data() + h * slots * s.head_dim, s.head_dim,
                                keys_seen, s.head_dim, scale, scores, keys_seen);
      for (int64_t j = 0; j < n; ++j) {
        key_counts[j] = batch.slots[t0 + j] + 1;
        attention_probabilities(batch, t0 + j, h, s.heads, scores + j * keys_seen, key_counts[j]);
      }
      kernels::attention_weighted_sum(scores, keys_seen, n, key_counts,
                                      scratch.values.data() + h * slots * s.v, s.v, s.v, out,
                                      out_stride);
      return;
    }
    // bf16: queries and probabilities as bf16 rows of an even length, zero-padded.
    const int64_t query_stride = (s.head_dim + 1) / 2 * 2, probs_stride = (keys_seen + 1) / 2 * 2;
    uint16_t* rows = thread_bf16_rows(n * std::max(query_stride, probs_stride)).data();
    kernels::round_rows_to_bf16(queries, s.head_dim, n, s.head_dim, rows, query_stride);
    kernels::attention_scores_bf16(rows, query_stride, n,
                                   scratch.packed_keys.data() + h * packed_key_elements,
                                   keys_seen, s.head_dim, scale, scores, keys_seen);
    for (int64_t j = 0; j < n; ++j) {
      key_counts[j] = batch.slots[t0 + j] + 1;
      attention_probabilities_bf16(batch, t0 + j, h, s.heads, scores + j * keys_seen,
                                   key_counts[j], rows + j * probs_stride, probs_stride);
    }
    kernels::attention_weighted_sum_bf16(rows, probs_stride, n, key_counts,
                                         scratch.packed_values.data() + h * packed_value_elements,
                                         s.v, out, out_stride);
  });
}

constexpr int kUnsetPrecision = -1;
std::atomic<int> g_attention_precision{kUnsetPrecision};

}  // namespace

std::string_view attention_precision_name(AttentionPrecision precision) {
  return precision == AttentionPrecision::kBf16 ? "bf16" : "f32";
}

AttentionPrecision parse_attention_precision(std::string_view name, std::string_view what) {
  for (AttentionPrecision precision : {AttentionPrecision::kF32, AttentionPrecision::kBf16})
    if (name == attention_precision_name(precision)) return precision;
  throw Error(std::string(what) + "=" + std::string(name) +
              ": unknown attention precision (expected f32 or bf16)");
}

AttentionPrecision attention_precision() {
  int precision = g_attention_precision.load(std::memory_order_relaxed);
  if (precision == kUnsetPrecision) {
    const char* name = std::getenv("DSV3_ATTENTION_PRECISION");
    precision = int(name == nullptr || *name == '\0'
                        ? AttentionPrecision::kBf16
                        : parse_attention_precision(name, "DSV3_ATTENTION_PRECISION"));
    g_attention_precision.store(precision, std::memory_order_relaxed);
  }
  return AttentionPrecision(precision);
}

void set_attention_precision(AttentionPrecision precision) {
  g_attention_precision.store(int(precision), std::memory_order_relaxed);
}

CacheElement cache_element_for(const AttentionWeights& w) {
  return attention_precision() == AttentionPrecision::kBf16 &&
                 kernels::rounds_activations_to_bf16(w.kv_b_proj)
             ? CacheElement::kBf16
             : CacheElement::kF32;
}

void mla_attention(const Config& config, const Rope& rope, const AttentionWeights& w,
                   int64_t layer, const float* hidden, const TokenBatch& batch, float* out) {
  const Shape s(config);
  const int64_t tokens = batch.tokens;
  AttentionScratch& scratch = attention_scratch();
  profile::Phase phase("attn.q_a+kv_a");

  // Queries q = q_b(norm(q_a(x))) or q_proj(x), [tokens][heads][nope + rope], and the compressed
  // keys and values kv = kv_a(x): both products of x in one group.
  const Linear& q_first = config.q_lora_rank ? w.q_a_proj : w.q_proj;
  grow_scratch(scratch.q, tokens * s.heads * s.head_dim);
  grow_scratch(scratch.q_latent, tokens * q_first.weight.rows);
  grow_scratch(scratch.kv, tokens * (s.rank + s.rope));
  const kernels::MatmulItem from_hidden[] = {
      {&q_first.weight, hidden, tokens, scratch.q_latent.data()},
      {&w.kv_a_proj_with_mqa.weight, hidden, tokens, scratch.kv.data()}};
  kernels::matmul_group(from_hidden);
  add_bias(scratch.q_latent.data(), tokens, q_first.bias);
  add_bias(scratch.kv.data(), tokens, w.kv_a_proj_with_mqa.bias);
  // One decode token (the absorbed form, a short context): its queries are computed with its
  // attention (attend_query_heads), one pass of the pool fewer per layer.
  const bool per_head_unit = attends_per_head_unit(config, s, w, batch);
  if (config.q_lora_rank) {
    const int64_t q_rank = *config.q_lora_rank;
    float* q_latent = scratch.q_latent.data();
    for_row_ranges(tokens, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t)
        kernels::rms_norm(q_latent + t * q_rank, w.q_a_layernorm.weight.data(), q_rank,
                          w.q_a_layernorm.eps, q_latent + t * q_rank);
    });
    if (per_head_unit) {
      // q_b_proj's rows are computed with the attention, by each unit of heads.
      phase.next("attn.rope_cache");
      write_latent(s, w, rope, layer, batch, 0, scratch.kv.data());
      phase.stop();
      grow_scratch(scratch.attention_out, s.heads * s.v);
      attend_query_heads(s, rope, w, layer, batch, q_latent, scratch.q.data(),
                         float(rope.softmax_scale()), scratch.attention_out.data());
      phase.next("attn.o_proj");
      linear(w.o_proj, scratch.attention_out.data(), tokens, out);
      return;
    }
    phase.next("attn.q_b");
    kernels::matmul(w.q_b_proj, q_latent, tokens, scratch.q.data());
  } else {
    std::copy_n(scratch.q_latent.data(), tokens * s.heads * s.head_dim, scratch.q.data());
  }
  float* q = scratch.q.data();
  phase.next("attn.rope_cache");

  // One latent per token (normed) plus the shared rope key, into the cache; the rope parts of
  // key and queries rotated by the token's position.
  const float* kv = scratch.kv.data();
  for_row_ranges(tokens, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      write_latent(s, w, rope, layer, batch, t, kv + t * (s.rank + s.rope));
      rope.apply(batch.rotations[t], q + t * s.heads * s.head_dim + s.nope, s.heads, s.head_dim);
    }
  });

  // Attention per sequence, in the cheaper form unless one is asked for.
  phase.stop();
  const float scale = float(rope.softmax_scale());
  grow_scratch(scratch.attention_out, tokens * s.heads * s.v);
  for (const Group& group : group_by_cache(batch)) {
    if (form_of(s, group) == AttentionMode::kExpanded)
      attend_expanded(s, w, layer, group, batch, q, scale, scratch.attention_out.data());
    else
      attend_absorbed(s, w, layer, group, batch, q, scale, scratch.attention_out.data());
  }
  phase.next("attn.o_proj");
  linear(w.o_proj, scratch.attention_out.data(), tokens, out);
}

void attention_forms(const Config& config, const TokenBatch& batch, AttentionMode* forms) {
  const Shape s(config);
  for (const Group& group : group_by_cache(batch))
    std::fill_n(forms + group.first, group.count, form_of(s, group));
}

void mla_write_cache(const Config& config, const Rope& rope, const AttentionWeights& w,
                     int64_t layer, const float* hidden, const TokenBatch& batch) {
  const Shape s(config);
  const int64_t tokens = batch.tokens;
  AttentionScratch& scratch = attention_scratch();
  profile::Phase phase("attn.q_a+kv_a");
  grow_scratch(scratch.kv, tokens * (s.rank + s.rope));
  linear(w.kv_a_proj_with_mqa, hidden, tokens, scratch.kv.data());
  phase.next("attn.rope_cache");
  const float* kv = scratch.kv.data();
  for_row_ranges(tokens, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      write_latent(s, w, rope, layer, batch, t, kv + t * (s.rank + s.rope));
  });
}

}  // namespace dsv3
