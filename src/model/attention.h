// Multi-head Latent Attention (DeepSeek-V2 paper, section 2.1; DeepSeek-V3 paper, 2.1.1).
// Queries go through the low-rank q_a/q_b projections (or one q_proj); keys and values are
// compressed into one latent per token, which is all the cache keeps, plus a shared rope key.
// Attention runs over the latent directly with kv_b_proj absorbed into the query (keys) and
// the output (values), so no per-head key or value is ever expanded.
#pragma once

#include <cstdint>

#include "cache/latent_cache.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv3 {

struct AttentionInput {
  const float* hidden;  // [tokens][hidden_size], after input_layernorm
  int64_t tokens;
  const int64_t* positions;  // [tokens]: cache slot = rope position of each token
  int64_t sequence_length;   // max position + 1 (dynamic RoPE)
};

// Writes the new tokens' latents into `cache` (layer `layer`, slots `positions`), attends each
// token causally to slots [0, its position], and writes o_proj's output [tokens][hidden_size].
void mla_attention(const Config& config, const Rope& rope, const AttentionWeights& weights,
                   int64_t layer, const AttentionInput& input, LatentCache& cache, float* out);

}  // namespace dsv3
