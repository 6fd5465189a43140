// How much of the model one token touches: the weight bytes read to decode a token (active
// experts only) and the multiply-adds of a forward pass, for benchmarks and their roofline.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/weights.h"

namespace dsv3 {

struct Footprint {
  int64_t weight_bytes = 0;            // every weight matrix of the main layers and heads
  int64_t decode_bytes_per_token = 0;  // weights read for one decoded token (with lm_head)
  int64_t flops_per_token = 0;         // 2 x multiply-adds of the matrix products, no lm_head
  int64_t lm_head_flops = 0;           // 2 x multiply-adds of the lm_head for one token
};

Footprint model_footprint(const Config& config, const ModelWeights& weights);

// 2 x multiply-adds of the attention products of a prefill of `tokens` tokens after `depth`
// cached ones, as the expanded form computes them (a prefill's form, model/attention.h): every
// head's scores (qk_head_dim per key) and weighted sum (v_head_dim per key) over the keys each
// token sees, causally (depth + 1 for the first token, depth + tokens for the last).
int64_t prefill_attention_flops(const Config& config, int64_t tokens, int64_t depth = 0);

// 2 x multiply-adds that a prefill of `tokens` tokens after `depth` cached ones leaves out when
// only its last token's hidden state is kept (Model::forward_batch's rows_kept = 1): for the
// other tokens the last layer computes kv_a_proj (their latents go into the cache) and, in the
// expanded form of its attention, kv_b_proj, and nothing else.
int64_t prefill_skipped_flops(const Config& config, const ModelWeights& weights, int64_t tokens,
                              int64_t depth = 0);

// Bytes of one weight matrix as stored (with its block scales).
int64_t matrix_bytes(const WeightMatrix& matrix);

}  // namespace dsv3
