#include "model/attention.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "tensor/thread_pool.h"

namespace dsv3 {

namespace {

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

// A row-major float matrix [rows][cols] as matmul's weight operand.
WeightMatrix float_matrix(const float* data, int64_t rows, int64_t cols) {
  WeightMatrix m;
  m.dtype = DType::F32;
  m.data = data;
  m.rows = rows;
  m.cols = cols;
  return m;
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
};

std::vector<Group> group_by_cache(const TokenBatch& batch) {
  std::vector<Group> groups;
  for (int64_t t = 0; t < batch.tokens; ++t) {
    if (groups.empty() || groups.back().cache != batch.caches[t])
      groups.push_back({t, 0, batch.caches[t], 0});
    groups.back().count++;
    groups.back().visible_slots = std::max(groups.back().visible_slots, batch.slots[t] + 1);
  }
  return groups;
}

// Token t's scores over slots [0, visible) -> attention weights: padding slots (key_masks) get
// none, a token that sees no slot gets all zeros (kernels::softmax); recorded for
// output_attentions.
void attention_probabilities(const TokenBatch& batch, int64_t t, int64_t h, int64_t heads,
                             float* scores, int64_t visible) {
  if (const uint8_t* mask = batch.key_masks ? batch.key_masks[t] : nullptr)
    for (int64_t slot = 0; slot < visible; ++slot)
      if (!mask[slot]) scores[slot] = -std::numeric_limits<float>::infinity();
  kernels::softmax(scores, visible);
  if (batch.attention_weights)
    std::copy_n(scores, visible,
                batch.attention_weights + (t * heads + h) * batch.attention_key_count);
}

// Multiply-adds of each form for one group (per head); the cheaper one is used in kAuto.
bool expanded_is_cheaper(const Shape& s, const Group& group) {
  const double tokens = double(group.count), slots = double(group.visible_slots);
  const double absorbed = tokens * s.rank * (s.nope + s.v) + tokens * slots * (2.0 * s.rank + s.rope);
  const double expanded = slots * s.rank * (s.nope + s.v) + tokens * slots * (s.nope + s.rope + s.v);
  return expanded < absorbed;
}

// Absorbed: score(t, s) = (W_UK^T q_nope) . latent_s + q_rope . k_rope_s; the output is
// W_UV (sum_s p_s latent_s). Nothing per head is ever expanded from the cache.
void attend_absorbed(const Shape& s, const AttentionWeights& w, int64_t layer, const Group& group,
                     const TokenBatch& batch, const float* q, float scale, float* attention_out) {
  const int64_t tokens = group.count;
  std::vector<float> q_nope_head(tokens * s.nope), q_absorbed(tokens * s.heads * s.rank);
  std::vector<float> q_absorbed_head(tokens * s.rank);
  for (int64_t h = 0; h < s.heads; ++h) {
    for (int64_t i = 0; i < tokens; ++i)
      std::copy_n(q + ((group.first + i) * s.heads + h) * s.head_dim, s.nope,
                  q_nope_head.data() + i * s.nope);
    kernels::matmul_f32_activations(w.key_absorb[h], q_nope_head.data(), tokens, q_absorbed_head.data());
    for (int64_t i = 0; i < tokens; ++i)
      std::copy_n(q_absorbed_head.data() + i * s.rank, s.rank,
                  q_absorbed.data() + (i * s.heads + h) * s.rank);
  }

  std::vector<float> latent_out(tokens * s.heads * s.rank, 0.0f), scores;
  for (int64_t i = 0; i < tokens; ++i) {
    const int64_t t = group.first + i;
    const int64_t visible = batch.slots[t] + 1;  // causal: slots [0, slot]
    scores.resize(visible);
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* q_latent = q_absorbed.data() + (i * s.heads + h) * s.rank;
      const float* q_rope = q + (t * s.heads + h) * s.head_dim + s.nope;
      for (int64_t slot = 0; slot < visible; ++slot) {
        const float* row = group.cache->row(layer, slot);
        scores[slot] = (kernels::dot(q_latent, row, s.rank) + kernels::dot(q_rope, row + s.rank, s.rope)) * scale;
      }
      attention_probabilities(batch, t, h, s.heads, scores.data(), visible);
      float* out = latent_out.data() + (i * s.heads + h) * s.rank;
      for (int64_t slot = 0; slot < visible; ++slot)
        kernels::axpy(scores[slot], group.cache->row(layer, slot), out, s.rank);
    }
  }

  std::vector<float> latent_head(tokens * s.rank), value_head(tokens * s.v);
  for (int64_t h = 0; h < s.heads; ++h) {
    for (int64_t i = 0; i < tokens; ++i)
      std::copy_n(latent_out.data() + (i * s.heads + h) * s.rank, s.rank, latent_head.data() + i * s.rank);
    kernels::matmul_f32_activations(w.value_up[h], latent_head.data(), tokens, value_head.data());
    for (int64_t i = 0; i < tokens; ++i)
      std::copy_n(value_head.data() + i * s.v, s.v,
                  attention_out + ((group.first + i) * s.heads + h) * s.v);
  }
}

// Expanded: keys [k_nope = W_UK latent_s, k_rope_s] and values W_UV latent_s per head, then
// ordinary attention (what transformers computes).
void attend_expanded(const Shape& s, const AttentionWeights& w, int64_t layer, const Group& group,
                     const TokenBatch& batch, const float* q, float scale, float* attention_out) {
  const int64_t slots = group.visible_slots;
  std::vector<float> latents(slots * s.rank);
  for (int64_t slot = 0; slot < slots; ++slot)
    std::copy_n(group.cache->row(layer, slot), s.rank, latents.data() + slot * s.rank);
  const int64_t kv_width = s.heads * (s.nope + s.v);
  std::vector<float> keys_values(slots * kv_width);  // [slot][head][nope + v]
  // Float activations in the products that differ between the absorbed and expanded forms.
  kernels::matmul_f32_activations(w.kv_b_proj, latents.data(), slots, keys_values.data());

  // Per head, as two matrix products (the kernels' blocked matmul, float activations), for
  // chunks of kQueryChunk tokens over the slots the chunk's last token sees (causal: the slots
  // past it would only get zero weight):
  //   scores[t][slot] = q_t . [k_nope | k_rope]_slot;
  //   out[t] = sum_slot p[t][slot] v_slot, with p zero past the slots token t sees (exact zeros:
  //   a token's result does not depend on the chunk's length).
  // Heads are independent: each thread takes a range of them (a matmul inside runs on the
  // calling thread), so results do not depend on the thread count.
  constexpr int64_t kQueryChunk = 64;
  const int64_t key_width = s.nope + s.rope;
  ThreadPool::global().parallel_for(s.heads, [&](int64_t head_begin, int64_t head_end) {
    std::vector<float> keys(slots * key_width), values_by_dim(s.v * slots);
    std::vector<float> queries(kQueryChunk * key_width), scores(kQueryChunk * slots);
    std::vector<float> head_out(kQueryChunk * s.v);
    for (int64_t h = head_begin; h < head_end; ++h) {
      for (int64_t slot = 0; slot < slots; ++slot) {
        std::copy_n(keys_values.data() + slot * kv_width + h * (s.nope + s.v), s.nope,
                    keys.data() + slot * key_width);
        std::copy_n(group.cache->row(layer, slot) + s.rank, s.rope,
                    keys.data() + slot * key_width + s.nope);
      }
      for (int64_t first = 0; first < group.count; first += kQueryChunk) {
        const int64_t n = std::min(kQueryChunk, group.count - first);
        int64_t chunk_slots = 0;
        for (int64_t i = first; i < first + n; ++i) {
          chunk_slots = std::max(chunk_slots, batch.slots[group.first + i] + 1);
          std::copy_n(q + ((group.first + i) * s.heads + h) * s.head_dim, key_width,
                      queries.data() + (i - first) * key_width);
        }
        kernels::matmul_f32_activations(float_matrix(keys.data(), chunk_slots, key_width),
                                        queries.data(), n, scores.data());
        for (int64_t i = 0; i < n; ++i) {
          const int64_t t = group.first + first + i;
          const int64_t visible = batch.slots[t] + 1;
          float* row = scores.data() + i * chunk_slots;
          for (int64_t slot = 0; slot < visible; ++slot) row[slot] *= scale;
          attention_probabilities(batch, t, h, s.heads, row, visible);
          std::fill(row + visible, row + chunk_slots, 0.0f);
        }
        for (int64_t slot = 0; slot < chunk_slots; ++slot) {
          const float* value = keys_values.data() + slot * kv_width + h * (s.nope + s.v) + s.nope;
          for (int64_t d = 0; d < s.v; ++d) values_by_dim[d * chunk_slots + slot] = value[d];
        }
        kernels::matmul_f32_activations(float_matrix(values_by_dim.data(), s.v, chunk_slots),
                                        scores.data(), n, head_out.data());
        for (int64_t i = 0; i < n; ++i) {
          std::copy_n(head_out.data() + i * s.v, s.v,
                      attention_out + ((group.first + first + i) * s.heads + h) * s.v);
        }
      }
    }
  });
}

}  // namespace

void mla_attention(const Config& config, const Rope& rope, const AttentionWeights& w,
                   int64_t layer, const float* hidden, const TokenBatch& batch, float* out) {
  const Shape s(config);
  const int64_t tokens = batch.tokens;

  // Queries: q = q_b(norm(q_a(x))) or q_proj(x), [tokens][heads][nope + rope].
  std::vector<float> q(tokens * s.heads * s.head_dim);
  if (config.q_lora_rank) {
    const int64_t q_rank = *config.q_lora_rank;
    std::vector<float> q_latent(tokens * q_rank);
    linear(w.q_a_proj, hidden, tokens, q_latent.data());
    for (int64_t t = 0; t < tokens; ++t)
      kernels::rms_norm(q_latent.data() + t * q_rank, w.q_a_layernorm.weight.data(), q_rank,
                        w.q_a_layernorm.eps, q_latent.data() + t * q_rank);
    kernels::matmul(w.q_b_proj, q_latent.data(), tokens, q.data());
  } else {
    linear(w.q_proj, hidden, tokens, q.data());
  }

  // Keys and values: one latent per token (normed) plus the shared rope key, into the cache;
  // the rope parts of key and queries rotated by the token's position.
  std::vector<float> kv(tokens * (s.rank + s.rope));
  linear(w.kv_a_proj_with_mqa, hidden, tokens, kv.data());
  for (int64_t t = 0; t < tokens; ++t) {
    const float* kv_t = kv.data() + t * (s.rank + s.rope);
    float* slot = batch.caches[t]->row(layer, batch.slots[t]);
    kernels::rms_norm(kv_t, w.kv_a_layernorm.weight.data(), s.rank, w.kv_a_layernorm.eps, slot);
    std::copy(kv_t + s.rank, kv_t + s.rank + s.rope, slot + s.rank);
    const Rope::Rotation rotation = rope.rotation(batch.positions[t], batch.sequence_length);
    rope.apply(rotation, slot + s.rank, 1, s.rope);
    rope.apply(rotation, q.data() + t * s.heads * s.head_dim + s.nope, s.heads, s.head_dim);
  }

  // Attention per sequence, in the cheaper form unless one is asked for.
  const float scale = float(rope.softmax_scale());
  std::vector<float> attention_out(tokens * s.heads * s.v);
  for (const Group& group : group_by_cache(batch)) {
    const bool expanded = batch.mode == AttentionMode::kExpanded ||
                          (batch.mode == AttentionMode::kAuto && expanded_is_cheaper(s, group));
    if (expanded)
      attend_expanded(s, w, layer, group, batch, q.data(), scale, attention_out.data());
    else
      attend_absorbed(s, w, layer, group, batch, q.data(), scale, attention_out.data());
  }
  linear(w.o_proj, attention_out.data(), tokens, out);
}

}  // namespace dsv3
