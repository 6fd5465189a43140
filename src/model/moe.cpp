#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace dsv3 {

namespace {

// Indices of the k largest values into `order` (resized to k), ties to the lower index
// (deterministic; torch.topk leaves tie order unspecified).
void top_k_indices(const float* values, int64_t n, int64_t k, std::vector<int64_t>& order) {
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  order.resize(k);
}

}  // namespace

void route_tokens(const Config& config, const RouterWeights& gate, const float* x, int64_t tokens,
                  Routing& routing) {
  const int64_t experts = config.n_routed_experts;
  const int64_t groups = config.n_group, per_group = config.experts_per_group();
  routing.top_k = config.num_experts_per_tok;
  routing.expert_ids.resize(tokens * routing.top_k);
  routing.expert_weights.resize(tokens * routing.top_k);

  // Scratch kept by the thread: no allocation per call once warm.
  thread_local std::vector<float> logits, scores, choice, group_scores;
  thread_local std::vector<int64_t> best, kept_groups, chosen;
  thread_local std::vector<uint8_t> group_kept;
  logits.resize(tokens * experts);
  kernels::matmul(gate.weight, x, tokens, logits.data());
  scores.resize(experts);
  choice.resize(experts);
  group_scores.resize(groups);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t e = 0; e < experts; ++e) {
      scores[e] = 1.0f / (1.0f + std::exp(-logits[t * experts + e]));
      choice[e] = scores[e] + gate.e_score_correction_bias[e];  // bias steers choice only
    }
    // A group's score is the sum of its two best experts; keep the best topk_group groups.
    for (int64_t g = 0; g < groups; ++g) {
      top_k_indices(choice.data() + g * per_group, per_group, 2, best);
      group_scores[g] = choice[g * per_group + best[0]] + choice[g * per_group + best[1]];
    }
    group_kept.assign(groups, 0);
    top_k_indices(group_scores.data(), groups, config.topk_group, kept_groups);
    for (int64_t g : kept_groups) group_kept[g] = 1;
    // transformers fills the experts of dropped groups with 0.0 (not -inf).
    for (int64_t e = 0; e < experts; ++e)
      if (!group_kept[e / per_group]) choice[e] = 0.0f;
    top_k_indices(choice.data(), experts, routing.top_k, chosen);

    float sum = 0.0f;
    for (int64_t k = 0; k < routing.top_k; ++k) sum += scores[chosen[k]];
    const float denominator = config.norm_topk_prob ? sum + 1e-20f : 1.0f;
    for (int64_t k = 0; k < routing.top_k; ++k) {
      routing.expert_ids[t * routing.top_k + k] = int32_t(chosen[k]);
      routing.expert_weights[t * routing.top_k + k] =
          scores[chosen[k]] / denominator * float(config.routed_scaling_factor);
    }
  }
}

Routing route_tokens(const Config& config, const RouterWeights& gate, const float* x,
                     int64_t tokens) {
  Routing routing;
  route_tokens(config, gate, x, tokens, routing);
  return routing;
}

void moe_forward(const Config& config, const MoeWeights& weights, const float* x, int64_t tokens,
                 float* out) {
  const int64_t hidden = config.hidden_size;
  thread_local Routing routing;
  route_tokens(config, weights.gate, x, tokens, routing);

  // The (token, choice) rows routed to each expert, experts in order: each active expert runs
  // once over its rows, packed together.
  thread_local std::vector<int64_t> expert_of_row_order, expert_first;
  const int64_t routed_rows = tokens * routing.top_k;
  expert_first.assign(config.n_routed_experts + 1, 0);
  for (int64_t row = 0; row < routed_rows; ++row) expert_first[routing.expert_ids[row] + 1]++;
  for (int64_t e = 0; e < config.n_routed_experts; ++e) expert_first[e + 1] += expert_first[e];
  expert_of_row_order.resize(routed_rows);  // packed position -> (token, choice) row
  {
    thread_local std::vector<int64_t> fill;
    fill.assign(expert_first.begin(), expert_first.end() - 1);
    for (int64_t row = 0; row < routed_rows; ++row)
      expert_of_row_order[fill[routing.expert_ids[row]]++] = row;
  }

  // Packed inputs, then the gate and up projections of every active expert and of the shared
  // experts in one group, SwiGLU, and every down projection in a second group.
  const int64_t intermediate = config.moe_intermediate_size;
  const int64_t shared_intermediate =
      weights.has_shared_experts ? weights.shared_experts.gate_proj.rows : 0;
  thread_local std::vector<float> packed_in, gate, up, packed_out, shared_gate, shared_up,
      shared_out;
  packed_in.resize(routed_rows * hidden);
  gate.resize(routed_rows * intermediate);
  up.resize(routed_rows * intermediate);
  packed_out.resize(routed_rows * hidden);
  for (int64_t i = 0; i < routed_rows; ++i)
    std::copy_n(x + expert_of_row_order[i] / routing.top_k * hidden, hidden,
                packed_in.data() + i * hidden);

  thread_local std::vector<kernels::MatmulItem> projections, down_projections;
  projections.clear();
  down_projections.clear();
  for (int64_t e = 0; e < config.n_routed_experts; ++e) {
    const int64_t first = expert_first[e], n = expert_first[e + 1] - first;
    if (n == 0) continue;
    const MlpWeights& expert = weights.experts[e];
    // An expert of one token reads it in place (the same values as its packed copy): the
    // products of a decode step then all read one x, and quantized weights quantize it once
    // (kernels::matmul_group).
    const float* expert_in = n == 1 ? x + expert_of_row_order[first] / routing.top_k * hidden
                                    : packed_in.data() + first * hidden;
    projections.push_back({&expert.gate_proj, expert_in, n, gate.data() + first * intermediate});
    projections.push_back({&expert.up_proj, expert_in, n, up.data() + first * intermediate});
    down_projections.push_back({&expert.down_proj, gate.data() + first * intermediate, n,
                                packed_out.data() + first * hidden});
  }
  if (weights.has_shared_experts) {
    shared_gate.resize(tokens * shared_intermediate);
    shared_up.resize(tokens * shared_intermediate);
    shared_out.resize(tokens * hidden);
    const MlpWeights& shared = weights.shared_experts;
    projections.push_back({&shared.gate_proj, x, tokens, shared_gate.data()});
    projections.push_back({&shared.up_proj, x, tokens, shared_up.data()});
    down_projections.push_back({&shared.down_proj, shared_gate.data(), tokens, shared_out.data()});
  }
  kernels::matmul_group(projections);
  kernels::silu_mul(gate.data(), up.data(), routed_rows * intermediate);
  if (weights.has_shared_experts)
    kernels::silu_mul(shared_gate.data(), shared_up.data(), tokens * shared_intermediate);
  kernels::matmul_group(down_projections);

  // Weighted sum of the experts' outputs per token, experts in order, then the shared experts.
  std::fill(out, out + tokens * hidden, 0.0f);
  for (int64_t i = 0; i < routed_rows; ++i) {
    const int64_t row = expert_of_row_order[i], token = row / routing.top_k;
    const float weight = routing.expert_weights[row];
    for (int64_t j = 0; j < hidden; ++j) out[token * hidden + j] += weight * packed_out[i * hidden + j];
  }
  if (weights.has_shared_experts)
    for (int64_t i = 0; i < tokens * hidden; ++i) out[i] += shared_out[i];
}

}  // namespace dsv3
