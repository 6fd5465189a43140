#include "model/moe.h"

#include <algorithm>
#include <limits>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/mlp.h"
#include "model/row_ranges.h"
#include "util/error.h"
#include "util/phase_profile.h"
#include "util/scratch.h"

namespace dsv3 {

namespace {

// Indices of the k largest values into `order` (resized to k, largest first), ties to the lower
// index (deterministic; torch.topk leaves tie order unspecified). An insertion into the k best so
// far: k is small (topk_group, num_experts_per_tok), and this runs for every token
// of every MoE layer (a partial sort of every index made moe.route of a 512-token prefill of
// the bench shape 4.9 ms instead of 3.3).
void top_k_indices(const float* values, int64_t n, int64_t k, std::vector<int64_t>& order) {
  order.resize(k);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = values[i];
    if (kept == k && !(v > values[order[k - 1]])) continue;
    int64_t p = kept < k ? kept++ : k - 1;  // the slot it enters from, then moves up
    for (; p > 0 && v > values[order[p - 1]]; --p) order[p] = order[p - 1];
    order[p] = i;
  }
}

}  // namespace

namespace {

// The weights of a token's chosen experts from their sigmoid scores: renormalised over the
// choice (norm_topk_prob), times routed_scaling_factor.
void weigh_choice(const Config& config, const float* scores, const int32_t* expert_ids,
                  float* expert_weights) {
  const int64_t top_k = config.num_experts_per_tok;
  float sum = 0.0f;
  for (int64_t k = 0; k < top_k; ++k) sum += scores[expert_ids[k]];
  const float denominator = config.norm_topk_prob ? sum + 1e-20f : 1.0f;
  for (int64_t k = 0; k < top_k; ++k)
    expert_weights[k] = scores[expert_ids[k]] / denominator * float(config.routed_scaling_factor);
}

// One token's choice from its router logits: top_k expert ids and weights.
void route_token(const Config& config, const RouterWeights& gate, const float* logits,
                 int32_t* expert_ids, float* expert_weights) {
  const int64_t experts = config.n_routed_experts;
  const int64_t groups = config.n_group, per_group = config.experts_per_group();
  const int64_t top_k = config.num_experts_per_tok;
  // Scratch kept by the thread: no allocation per call once warm.
  thread_local std::vector<float> scores, choice, group_scores;
  thread_local std::vector<int64_t> kept_groups, chosen;
  thread_local std::vector<uint8_t> group_kept;
  scores.resize(experts);
  choice.resize(experts);
  group_scores.resize(groups);
  kernels::sigmoid(logits, experts, scores.data());
  for (int64_t e = 0; e < experts; ++e)
    choice[e] = scores[e] + gate.e_score_correction_bias[e];  // bias steers choice only
  // A group's score is the sum of its two best experts (the best first); keep the best
  // topk_group groups.
  for (int64_t g = 0; g < groups; ++g) {
    const float* group = choice.data() + g * per_group;
    float first = group[0], second = -std::numeric_limits<float>::infinity();
    for (int64_t e = 1; e < per_group; ++e) {
      if (group[e] > first) {
        second = first;
        first = group[e];
      } else if (group[e] > second) {
        second = group[e];
      }
    }
    group_scores[g] = first + second;
  }
  group_kept.assign(groups, 0);
  top_k_indices(group_scores.data(), groups, config.topk_group, kept_groups);
  for (int64_t g : kept_groups) group_kept[g] = 1;
  // transformers fills the experts of dropped groups with 0.0 (not -inf).
  for (int64_t e = 0; e < experts; ++e)
    if (!group_kept[e / per_group]) choice[e] = 0.0f;
  top_k_indices(choice.data(), experts, top_k, chosen);

  for (int64_t k = 0; k < top_k; ++k) expert_ids[k] = int32_t(chosen[k]);
  weigh_choice(config, scores.data(), expert_ids, expert_weights);
}

// A token's given choice weighted by its router logits (a replayed RoutingLog).
void weigh_given_choice(const Config& config, const float* logits, const int32_t* expert_ids,
                        float* expert_weights) {
  thread_local std::vector<float> scores;
  scores.resize(config.n_routed_experts);
  kernels::sigmoid(logits, config.n_routed_experts, scores.data());  // as route_token, bitwise
  weigh_choice(config, scores.data(), expert_ids, expert_weights);
}

}  // namespace

namespace {

// Records the routing of `layer` into the log, or replaces it with the recorded one (weighted by
// this pass's router logits) and counts the choices this pass would have made differently.
void apply_routing_log(const Config& config, const float* logits, int64_t tokens, int64_t layer,
                       RoutingLog& log, Routing& routing) {
  if (int64_t(log.expert_ids.size()) <= layer) log.expert_ids.resize(size_t(layer) + 1);
  std::vector<int32_t>& logged = log.expert_ids[size_t(layer)];
  if (log.mode == RoutingLog::Mode::kRecord) {
    logged = routing.expert_ids;
    return;
  }
  if (logged.size() != routing.expert_ids.size())
    throw Error("routing replay: layer " + std::to_string(layer) + " recorded " +
                std::to_string(logged.size()) + " choices, this pass makes " +
                std::to_string(routing.expert_ids.size()));
  const int64_t top_k = routing.top_k, experts = config.n_routed_experts;
  for (int64_t t = 0; t < tokens; ++t) {
    int32_t* ids = routing.expert_ids.data() + t * top_k;
    const int32_t* given = logged.data() + t * top_k;
    std::vector<int32_t> own(ids, ids + top_k), recorded(given, given + top_k);
    std::sort(own.begin(), own.end());
    std::sort(recorded.begin(), recorded.end());
    log.differing += own != recorded;
    log.choices += 1;
    std::copy_n(given, top_k, ids);
    weigh_given_choice(config, logits + t * experts, ids, routing.expert_weights.data() + t * top_k);
  }
}

}  // namespace

void route_tokens(const Config& config, const RouterWeights& gate, const float* x, int64_t tokens,
                  Routing& routing, RoutingLog* log, int64_t layer) {
  const int64_t experts = config.n_routed_experts;
  routing.top_k = config.num_experts_per_tok;
  routing.expert_ids.resize(tokens * routing.top_k);
  routing.expert_weights.resize(tokens * routing.top_k);
  thread_local std::vector<float> thread_logits;
  std::vector<float>& logits = thread_logits;  // (see MoeScratch)
  logits.resize(tokens * experts);
  kernels::matmul(gate.weight, x, tokens, logits.data());
  for_row_ranges(tokens, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      route_token(config, gate, logits.data() + t * experts,
                  routing.expert_ids.data() + t * routing.top_k,
                  routing.expert_weights.data() + t * routing.top_k);
  });
  if (log) apply_routing_log(config, logits.data(), tokens, layer, *log, routing);
}

Routing route_tokens(const Config& config, const RouterWeights& gate, const float* x,
                     int64_t tokens) {
  Routing routing;
  route_tokens(config, gate, x, tokens, routing);
  return routing;
}

namespace {

// The buffers of one moe_forward call, grown on demand and kept by the calling thread: once
// warm, a step allocates nothing. Lambdas run on the pool reach them through a reference (a
// thread_local named inside a lambda would be the worker's own, empty one).
struct MoeScratch {
  Routing routing;
  std::vector<int64_t> expert_first;         // [expert + 1]: first packed position of each
  std::vector<int64_t> expert_of_row_order;  // packed position -> (token, choice) row
  std::vector<int64_t> packed_position;      // (token, choice) row -> packed position
  std::vector<int64_t> token_of_position;    // packed position -> token
  std::vector<int64_t> fill;
  std::vector<float> gate_up, activated, packed_out;
  std::vector<float> shared_gate_up, shared_activated, shared_out;
  std::vector<kernels::MatmulItem> projections, down_projections;
  std::vector<SwigluJob> swiglu;  // [expert], then the shared experts'
};

}  // namespace

void moe_forward(const Config& config, const MoeWeights& weights, const float* x, int64_t tokens,
                 float* out, RoutingLog* log, int64_t layer) {
  thread_local MoeScratch thread_scratch;
  MoeScratch& scratch = thread_scratch;
  const int64_t hidden = config.hidden_size;
  profile::Phase phase("moe.route");
  Routing& routing = scratch.routing;
  route_tokens(config, weights.gate, x, tokens, routing, log, layer);
  const int64_t top_k = routing.top_k;

  // The (token, choice) rows routed to each expert, experts in order: each active expert runs
  // once over its rows, packed together.
  phase.next("moe.gather");
  const int64_t routed_rows = tokens * top_k;
  std::vector<int64_t>& expert_first = scratch.expert_first;
  std::vector<int64_t>& expert_of_row_order = scratch.expert_of_row_order;
  std::vector<int64_t>& packed_position = scratch.packed_position;
  expert_first.assign(config.n_routed_experts + 1, 0);
  for (int64_t row = 0; row < routed_rows; ++row) expert_first[routing.expert_ids[row] + 1]++;
  for (int64_t e = 0; e < config.n_routed_experts; ++e) expert_first[e + 1] += expert_first[e];
  expert_of_row_order.resize(routed_rows);
  packed_position.resize(routed_rows);
  scratch.token_of_position.resize(routed_rows);
  scratch.fill.assign(expert_first.begin(), expert_first.end() - 1);
  for (int64_t row = 0; row < routed_rows; ++row) {
    const int64_t position = scratch.fill[routing.expert_ids[row]]++;
    expert_of_row_order[position] = row;
    packed_position[row] = position;
    scratch.token_of_position[position] = row / top_k;
  }

  // The gate and up projections of every active expert (on its tokens' rows of x, picked by
  // the products themselves: MatmulItem::x_rows) and of the shared experts in one group (one
  // product per expert where gate and up lie stacked), SwiGLU, and every down projection in a
  // second group.
  const int64_t intermediate = config.moe_intermediate_size;
  const int64_t shared_intermediate =
      weights.has_shared_experts ? weights.shared_experts.gate_proj.rows : 0;
  std::vector<float>& gate_up = scratch.gate_up;
  std::vector<float>& activated = scratch.activated;
  std::vector<float>& packed_out = scratch.packed_out;
  grow_scratch(gate_up, routed_rows * 2 * intermediate);
  grow_scratch(activated, routed_rows * intermediate);
  grow_scratch(packed_out, routed_rows * hidden);

  std::vector<kernels::MatmulItem>& projections = scratch.projections;
  std::vector<kernels::MatmulItem>& down_projections = scratch.down_projections;
  std::vector<SwigluJob>& swiglu = scratch.swiglu;
  projections.clear();
  down_projections.clear();
  swiglu.assign(config.n_routed_experts + 1, SwigluJob{});  // not moved while items point in
  for (int64_t e = 0; e < config.n_routed_experts; ++e) {
    const int64_t first = expert_first[e], n = expert_first[e + 1] - first;
    if (n == 0) continue;
    const MlpWeights& expert = weights.experts[e];
    // An expert of one token reads it as a plain row of x: the products of a decode step then
    // all read one x, and quantized weights quantize it once (kernels::matmul_group).
    const int64_t* token_rows = scratch.token_of_position.data() + first;
    const float* expert_in = n == 1 ? x + token_rows[0] * hidden : x;
    append_gate_up(expert, expert_in, n, gate_up.data() + first * 2 * intermediate,
                   activated.data() + first * intermediate, swiglu[e], projections,
                   n == 1 ? nullptr : token_rows);
    down_projections.push_back({&expert.down_proj, activated.data() + first * intermediate, n,
                                packed_out.data() + first * hidden});
  }
  std::vector<float>& shared_gate_up = scratch.shared_gate_up;
  std::vector<float>& shared_activated = scratch.shared_activated;
  std::vector<float>& shared_out = scratch.shared_out;
  if (weights.has_shared_experts) {
    grow_scratch(shared_gate_up, tokens * 2 * shared_intermediate);
    grow_scratch(shared_activated, tokens * shared_intermediate);
    grow_scratch(shared_out, tokens * hidden);
    const MlpWeights& shared = weights.shared_experts;
    append_gate_up(shared, x, tokens, shared_gate_up.data(), shared_activated.data(),
                   swiglu[config.n_routed_experts], projections);
    down_projections.push_back(
        {&shared.down_proj, shared_activated.data(), tokens, shared_out.data()});
  }
  phase.next("moe.gate_up");
  kernels::matmul_group(projections);
  phase.next("moe.silu");
  // The SwiGLU of the experts whose gate and up are not stacked (the others ran theirs as
  // their products completed), over the packed rows: each range through the experts it covers.
  for_row_ranges(routed_rows, [&](int64_t begin, int64_t end) {
    const auto after_begin =
        std::upper_bound(expert_first.begin(), expert_first.end(), begin) - expert_first.begin();
    for (int64_t e = after_begin - 1; e < config.n_routed_experts && expert_first[e] < end; ++e) {
      const int64_t first = expert_first[e];
      if (expert_first[e + 1] > first && !swiglu[e].on_completion)
        swiglu[e].run_rows(std::max(begin, first) - first,
                           std::min(end, expert_first[e + 1]) - first);
    }
  });
  if (weights.has_shared_experts && !swiglu[config.n_routed_experts].on_completion)
    swiglu[config.n_routed_experts].run();
  phase.next("moe.down");
  kernels::matmul_group(down_projections);
  phase.next("moe.scatter");

  // Weighted sum of the experts' outputs per token, experts in order (a token's rows in packed
  // order), then the shared experts.
  for_row_ranges(tokens, [&](int64_t begin, int64_t end) {
    // This thread's own: one token's packed rows, then the outputs and weights to sum.
    thread_local std::vector<int64_t> rows;
    thread_local std::vector<const float*> outputs;
    thread_local std::vector<float> output_weights;
    for (int64_t token = begin; token < end; ++token) {
      rows.assign(packed_position.begin() + token * top_k,
                  packed_position.begin() + (token + 1) * top_k);
      std::sort(rows.begin(), rows.end());
      outputs.clear();
      output_weights.clear();
      for (const int64_t i : rows) {
        outputs.push_back(packed_out.data() + i * hidden);
        output_weights.push_back(routing.expert_weights[expert_of_row_order[i]]);
      }
      if (weights.has_shared_experts) {
        outputs.push_back(shared_out.data() + token * hidden);
        output_weights.push_back(1.0f);
      }
      kernels::weighted_row_sum(outputs.data(), output_weights.data(), int64_t(outputs.size()),
                                hidden, out + token * hidden);
    }
  });
}

}  // namespace dsv3
