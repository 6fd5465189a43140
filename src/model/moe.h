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

// Teacher-forced routing, for measurements (`dsv3 quant-accuracy --reference-routes`): a pass
// records the experts every token chose in each MoE layer, or chooses the recorded ones. A
// replayed choice is weighted by the pass's own router scores, as if its router had made it. On a
// random checkpoint routing is fragile (a rounding flips near-tied experts), so this separates
// how exact the matrix products are from how often the router changes its mind.
struct RoutingLog {
  enum class Mode { kRecord, kReplay };
  Mode mode = Mode::kRecord;
  std::vector<std::vector<int32_t>> expert_ids;  // [layer][tokens * top_k] (dense layers empty)
  // Replay only: how many (token, layer) choices the pass's own router would have made
  // differently, out of how many.
  int64_t differing = 0, choices = 0;
};

// The router's choice for each token (x is [tokens][hidden], after post_attention_layernorm).
Routing route_tokens(const Config& config, const RouterWeights& gate, const float* x,
                     int64_t tokens);
// The same into `routing`, reusing its storage; with a log, recorded or replayed (moe_forward).
void route_tokens(const Config& config, const RouterWeights& gate, const float* x, int64_t tokens,
                  Routing& routing, RoutingLog* log = nullptr, int64_t layer = 0);

// x is [tokens][hidden], out is [tokens][hidden]. With a log, the pass records its routing of
// `layer` or replays the recorded one (a replay must have as many tokens as the record).
void moe_forward(const Config& config, const MoeWeights& weights, const float* x, int64_t tokens,
                 float* out, RoutingLog* log = nullptr, int64_t layer = 0);

}  // namespace dsv3
