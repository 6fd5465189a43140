#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/matmul.h"
#include "model/mlp.h"

namespace dsv3 {

namespace {

// Indices of the k largest values, ties to the lower index (deterministic; torch.topk leaves
// tie order unspecified).
std::vector<int64_t> top_k_indices(const float* values, int64_t n, int64_t k) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  order.resize(k);
  return order;
}

}  // namespace

Routing route_tokens(const Config& config, const RouterWeights& gate, const float* x,
                     int64_t tokens) {
  const int64_t experts = config.n_routed_experts;
  const int64_t groups = config.n_group, per_group = config.experts_per_group();
  Routing routing;
  routing.top_k = config.num_experts_per_tok;
  routing.expert_ids.resize(tokens * routing.top_k);
  routing.expert_weights.resize(tokens * routing.top_k);

  std::vector<float> logits(tokens * experts);
  kernels::matmul(gate.weight, x, tokens, logits.data());
  std::vector<float> scores(experts), choice(experts), group_scores(groups);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t e = 0; e < experts; ++e) {
      scores[e] = 1.0f / (1.0f + std::exp(-logits[t * experts + e]));
      choice[e] = scores[e] + gate.e_score_correction_bias[e];  // bias steers choice only
    }
    // A group's score is the sum of its two best experts; keep the best topk_group groups.
    for (int64_t g = 0; g < groups; ++g) {
      auto best = top_k_indices(choice.data() + g * per_group, per_group, 2);
      group_scores[g] = choice[g * per_group + best[0]] + choice[g * per_group + best[1]];
    }
    std::vector<bool> group_kept(groups, false);
    for (int64_t g : top_k_indices(group_scores.data(), groups, config.topk_group))
      group_kept[g] = true;
    // transformers fills the experts of dropped groups with 0.0 (not -inf).
    for (int64_t e = 0; e < experts; ++e)
      if (!group_kept[e / per_group]) choice[e] = 0.0f;
    auto chosen = top_k_indices(choice.data(), experts, routing.top_k);

    float sum = 0.0f;
    for (int64_t k = 0; k < routing.top_k; ++k) sum += scores[chosen[k]];
    const float denominator = config.norm_topk_prob ? sum + 1e-20f : 1.0f;
    for (int64_t k = 0; k < routing.top_k; ++k) {
      routing.expert_ids[t * routing.top_k + k] = int32_t(chosen[k]);
      routing.expert_weights[t * routing.top_k + k] =
          scores[chosen[k]] / denominator * float(config.routed_scaling_factor);
    }
  }
  return routing;
}

void moe_forward(const Config& config, const MoeWeights& weights, const float* x, int64_t tokens,
                 float* out) {
  const int64_t hidden = config.hidden_size;
  const Routing routing = route_tokens(config, weights.gate, x, tokens);

  // Group token rows by expert, then run each active expert once over its rows.
  std::vector<std::vector<int64_t>> rows_of_expert(config.n_routed_experts);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t k = 0; k < routing.top_k; ++k)
      rows_of_expert[routing.expert_ids[t * routing.top_k + k]].push_back(t * routing.top_k + k);

  std::fill(out, out + tokens * hidden, 0.0f);
  std::vector<float> expert_in, expert_out;
  for (int64_t e = 0; e < config.n_routed_experts; ++e) {
    const auto& rows = rows_of_expert[e];
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    expert_in.resize(n * hidden);
    expert_out.resize(n * hidden);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t token = rows[i] / routing.top_k;
      std::copy_n(x + token * hidden, hidden, expert_in.data() + i * hidden);
    }
    mlp_forward(weights.experts[e], expert_in.data(), n, expert_out.data());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t token = rows[i] / routing.top_k;
      const float weight = routing.expert_weights[rows[i]];
      for (int64_t j = 0; j < hidden; ++j) out[token * hidden + j] += weight * expert_out[i * hidden + j];
    }
  }
  if (weights.has_shared_experts) {
    std::vector<float> shared(tokens * hidden);
    mlp_forward(weights.shared_experts, x, tokens, shared.data());
    for (int64_t i = 0; i < tokens * hidden; ++i) out[i] += shared[i];
  }
}

}  // namespace dsv3
