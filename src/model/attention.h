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

// The new tokens of one forward pass: one or more sequences, concatenated. Each token has its
// sequence's cache, its slot in that cache and its rope position (usually equal to the slot).
struct TokenBatch {
  int64_t tokens = 0;
  const int64_t* positions = nullptr;   // [tokens] rope positions
  const int64_t* slots = nullptr;       // [tokens] cache slots
  LatentCache* const* caches = nullptr;  // [tokens] the cache of each token's sequence
  int64_t sequence_length = 0;           // max position + 1 (dynamic RoPE)
};

// Writes the new tokens' latents into their caches (layer `layer`), attends each token
// causally to slots [0, its slot] of its cache, and writes o_proj's output
// [tokens][hidden_size]. `hidden` is [tokens][hidden_size], after input_layernorm.
void mla_attention(const Config& config, const Rope& rope, const AttentionWeights& weights,
                   int64_t layer, const float* hidden, const TokenBatch& batch, float* out);

}  // namespace dsv3
