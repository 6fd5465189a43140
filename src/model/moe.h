// DeepSeekMoE (DeepSeek-V3 paper, section 2.1.2): a sigmoid router with an auxiliary-loss-free
// bias used only to choose experts, group-limited top-k, routed experts weighted by their
// (optionally renormalised) scores times routed_scaling_factor, plus shared experts.
// Experts run packed: the tokens routed to an expert are gathered and go through it together.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace dsv3 {

struct Routing {
  int64_t top_k = 0;
  std::vector<int32_t> expert_ids;      // [tokens][top_k]
  std::vector<float> expert_weights;    // [tokens][top_k]
};

// The router's choice for each token (x is [tokens][hidden], after post_attention_layernorm).
Routing route_tokens(const Config& config, const RouterWeights& gate, const float* x,
                     int64_t tokens);
// The same into `routing`, reusing its storage.
void route_tokens(const Config& config, const RouterWeights& gate, const float* x, int64_t tokens,
                  Routing& routing);

// x is [tokens][hidden], out is [tokens][hidden].
void moe_forward(const Config& config, const MoeWeights& weights, const float* x, int64_t tokens,
                 float* out);

}  // namespace dsv3
