// Multi-head Latent Attention (DeepSeek-V2 paper, section 2.1; DeepSeek-V3 paper, 2.1.1).
// Queries go through the low-rank q_a/q_b projections (or one q_proj); keys and values are
// compressed into one latent per token, which is all the cache keeps, plus a shared rope key.
// Attention runs over the latent directly with kv_b_proj absorbed into the query (keys) and
// the output (values), so no per-head key or value is ever expanded.
#pragma once

#include <cstdint>
#include <string_view>

#include "cache/latent_cache.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv3 {

// How attention is computed over the latent cache; both give the same result.
//  absorbed: kv_b_proj folded into the query and the output, scores against the latent
//            directly (cheapest per new token: decode);
//  expanded: the cached latents expanded to per-head keys and values through kv_b_proj, as
//            transformers does (cheaper when many new tokens attend to a short cache: prefill).
enum class AttentionMode { kAuto, kAbsorbed, kExpanded };

// The precision of the attention products that differ between the forms (the expanded form's
// kv_b_proj of the latents, both forms' scores and weighted sums) where BF16 weights take bf16
// activations (kernels/activation_precision.h):
//  bf16 (default): inputs rounded to bf16 and multiplied on vdpbf16ps (kernels/attention_bf16.h),
//       as torch runs attention in bfloat16: a 512-token prefill of the bench model runs 10-15 %
//       faster than in f32. Caches from Model::new_cache hold bf16 (cache_element_for), which
//       the absorbed form reads in place. The absorbed and expanded forms agree only to bf16
//       rounding, so a token's logits move by that much with the form its batch takes (a short
//       chunk of a long prompt, a reused prefix). Each form alone is exact to the bit for any batch, chunk
//       or thread count; the server feeds every prompt token in the expanded form for that
//       reason (SequenceInput::attention_mode).
//  f32: float inputs and a float cache, so that the two forms agree to float rounding.
// Where the activations are float (--activations f32, F32 and F16 weights), attention is too.
// Process-wide: set_attention_precision's, else DSV3_ATTENTION_PRECISION (f32|bf16), else bf16.
enum class AttentionPrecision { kF32, kBf16 };
AttentionPrecision attention_precision();
void set_attention_precision(AttentionPrecision precision);
std::string_view attention_precision_name(AttentionPrecision precision);
// The cache element of a model whose layers' attention weights are `w`: bf16 where its
// attention runs in bf16 (bf16 precision, kv_b_proj taking bf16 activations), else float.
// The absorbed form runs its scores on vdpbf16ps over a bf16 cache (kernels/attention_ops.h).
CacheElement cache_element_for(const AttentionWeights& w);
// "f32" or "bf16"; throws dsv3::Error naming `what` otherwise.
AttentionPrecision parse_attention_precision(std::string_view name, std::string_view what);

struct RoutingLog;

// The new tokens of one forward pass: one or more sequences, concatenated. Each token has its
// sequence's cache, its slot in that cache and its rope position (usually equal to the slot).
struct TokenBatch {
  int64_t tokens = 0;
  const int64_t* positions = nullptr;   // [tokens] rope positions
  const int64_t* slots = nullptr;       // [tokens] cache slots
  LatentCache* const* caches = nullptr;  // [tokens] the cache of each token's sequence
  int64_t sequence_length = 0;           // max position + 1 (dynamic RoPE)
  AttentionMode mode = AttentionMode::kAuto;
  // [tokens] the form each token's sequence asks for where `mode` is kAuto (null: kAuto for
  // every token): SequenceInput::attention_mode.
  const AttentionMode* sequence_modes = nullptr;
  // [tokens] each token's rope rotation (Rope::rotation of its position and sequence_length),
  // the same in every layer: computed once per forward pass.
  const Rope::Rotation* rotations = nullptr;
  // Padding (transformers' attention_mask): per token, its sequence's flags over cache slots,
  // 0 = never attend to that slot. Null (the array or an entry): every slot counts.
  const uint8_t* const* key_masks = nullptr;
  // output_attentions: when set, receives the softmax weights [tokens][heads][key_count],
  // entry s for cache slot s (0 for slots a token does not see).
  float* attention_weights = nullptr;
  int64_t attention_key_count = 0;
  // Teacher-forced routing (model/moe.h), for measurements: recorded or replayed when set.
  RoutingLog* routing_log = nullptr;
};

// Writes the new tokens' latents into their caches (layer `layer`), attends each token
// causally to the unmasked slots of [0, its slot] of its cache, and writes o_proj's output
// [tokens][hidden_size]. `hidden` is [tokens][hidden_size], after input_layernorm.
// A token that sees no slot at all (left padding) gets a zero attention output and weights, as
// transformers' SDPA path with torch >= 2.5 (its eager path averages over every slot instead).
void mla_attention(const Config& config, const Rope& rope, const AttentionWeights& weights,
                   int64_t layer, const float* hidden, const TokenBatch& batch, float* out);

// Only the cache writes of mla_attention: the tokens' latents into their caches, for tokens
// whose attention output nobody reads (the last layer's, where only later tokens' logits are
// kept). `hidden` as mla_attention's.
void mla_write_cache(const Config& config, const Rope& rope, const AttentionWeights& weights,
                     int64_t layer, const float* hidden, const TokenBatch& batch);

// The form, kAbsorbed or kExpanded, mla_attention attends each token of `batch` in, into
// forms[batch.tokens]. A pass over only some of these tokens attends them alike (to the bit)
// when given these as TokenBatch::sequence_modes.
void attention_forms(const Config& config, const TokenBatch& batch, AttentionMode* forms);

}  // namespace dsv3
