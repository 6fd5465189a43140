// One transformer block: x += MLA(norm(x)); x += FFN(norm(x)), the FFN being a dense MLP for
// the first first_k_dense_replace layers and DeepSeekMoE after.
#pragma once

#include <cstdint>

#include "cache/latent_cache.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv3 {

// Updates `hidden` ([tokens][hidden_size]) in place.
void decoder_layer_forward(const Config& config, const Rope& rope, const DecoderLayerWeights& weights,
                           int64_t layer, const TokenBatch& batch, float* hidden);

// Only the cache writes of the layer (mla_write_cache of input_layernorm(hidden)): for tokens
// whose output nobody reads. `hidden` ([tokens][hidden_size]) is left as it is.
void decoder_layer_write_cache(const Config& config, const Rope& rope,
                               const DecoderLayerWeights& weights, int64_t layer,
                               const TokenBatch& batch, const float* hidden);

}  // namespace dsv3
