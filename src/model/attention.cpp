#include "model/attention.h"

#include <algorithm>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/ops.h"

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

float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace

void mla_attention(const Config& config, const Rope& rope, const AttentionWeights& w,
                   int64_t layer, const float* hidden, const TokenBatch& batch, float* out) {
  const int64_t tokens = batch.tokens;
  const int64_t heads = config.num_attention_heads;
  const int64_t nope = config.qk_nope_head_dim, rope_dim = config.qk_rope_head_dim;
  const int64_t head_dim = config.qk_head_dim(), v_dim = config.v_head_dim;
  const int64_t rank = config.kv_lora_rank;

  // Queries: q = q_b(norm(q_a(x))) or q_proj(x), [tokens][heads][nope + rope].
  std::vector<float> q(tokens * heads * head_dim);
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

  // Keys and values: one latent per token (normed) plus the shared rope key, into the cache.
  std::vector<float> kv(tokens * (rank + rope_dim));
  linear(w.kv_a_proj_with_mqa, hidden, tokens, kv.data());
  for (int64_t t = 0; t < tokens; ++t) {
    const float* kv_t = kv.data() + t * (rank + rope_dim);
    float* slot = batch.caches[t]->row(layer, batch.slots[t]);
    kernels::rms_norm(kv_t, w.kv_a_layernorm.weight.data(), rank, w.kv_a_layernorm.eps, slot);
    std::copy(kv_t + rank, kv_t + rank + rope_dim, slot + rank);
    rope.apply(slot + rank, 1, rope_dim, batch.positions[t], batch.sequence_length);
    rope.apply(q.data() + t * heads * head_dim + nope, heads, head_dim, batch.positions[t],
               batch.sequence_length);
  }

  // Absorb W_UK into the query: q_latent[t][h] = W_UK[h]^T q_nope[t][h], [tokens][heads][rank].
  std::vector<float> q_absorbed(tokens * heads * rank);
  std::vector<float> q_nope_head(tokens * nope), q_absorbed_head(tokens * rank);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t t = 0; t < tokens; ++t)
      std::copy_n(q.data() + (t * heads + h) * head_dim, nope, q_nope_head.data() + t * nope);
    WeightMatrix key_absorb{DType::F32, w.key_absorb.data() + h * rank * nope, rank, nope};
    kernels::matmul(key_absorb, q_nope_head.data(), tokens, q_absorbed_head.data());
    for (int64_t t = 0; t < tokens; ++t)
      std::copy_n(q_absorbed_head.data() + t * rank, rank,
                  q_absorbed.data() + (t * heads + h) * rank);
  }

  // Scores over the latent cache, softmax, and the attention-weighted latent per head.
  const float scale = float(rope.softmax_scale());
  std::vector<float> latent_out(tokens * heads * rank, 0.0f);
  std::vector<float> scores;
  for (int64_t t = 0; t < tokens; ++t) {
    const LatentCache& cache = *batch.caches[t];
    const int64_t visible = batch.slots[t] + 1;  // causal: slots [0, slot]
    scores.resize(visible);
    for (int64_t h = 0; h < heads; ++h) {
      const float* q_latent = q_absorbed.data() + (t * heads + h) * rank;
      const float* q_rope = q.data() + (t * heads + h) * head_dim + nope;
      for (int64_t s = 0; s < visible; ++s) {
        const float* slot = cache.row(layer, s);
        scores[s] = (dot(q_latent, slot, rank) + dot(q_rope, slot + rank, rope_dim)) * scale;
      }
      kernels::softmax(scores.data(), visible);
      float* o = latent_out.data() + (t * heads + h) * rank;
      for (int64_t s = 0; s < visible; ++s) {
        const float* slot = cache.row(layer, s);
        for (int64_t r = 0; r < rank; ++r) o[r] += scores[s] * slot[r];
      }
    }
  }

  // Values: W_UV[h] applied to each head's weighted latent, then o_proj over all heads.
  std::vector<float> attention_out(tokens * heads * v_dim);
  std::vector<float> latent_head(tokens * rank), value_head(tokens * v_dim);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t t = 0; t < tokens; ++t)
      std::copy_n(latent_out.data() + (t * heads + h) * rank, rank, latent_head.data() + t * rank);
    WeightMatrix value_up{DType::F32, w.value_up.data() + h * v_dim * rank, v_dim, rank};
    kernels::matmul(value_up, latent_head.data(), tokens, value_head.data());
    for (int64_t t = 0; t < tokens; ++t)
      std::copy_n(value_head.data() + t * v_dim, v_dim,
                  attention_out.data() + (t * heads + h) * v_dim);
  }
  linear(w.o_proj, attention_out.data(), tokens, out);
}

}  // namespace dsv3
