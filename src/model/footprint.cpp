#include "model/footprint.h"

namespace dsv3 {

int64_t matrix_bytes(const WeightMatrix& m) {
  return m.stored_bytes();
}

namespace {

int64_t flops(const WeightMatrix& m) { return m.empty() ? 0 : 2 * m.rows * m.cols; }

int64_t mlp_bytes(const MlpWeights& mlp) {
  return matrix_bytes(mlp.gate_proj) + matrix_bytes(mlp.up_proj) + matrix_bytes(mlp.down_proj);
}
int64_t mlp_flops(const MlpWeights& mlp) {
  return flops(mlp.gate_proj) + flops(mlp.up_proj) + flops(mlp.down_proj);
}

// The products of one layer for one token (active experts only).
int64_t layer_flops(const Config& config, const DecoderLayerWeights& layer) {
  const AttentionWeights& a = layer.self_attn;
  const int64_t attention = flops(a.q_proj.weight) + flops(a.q_a_proj.weight) +
                            flops(a.q_b_proj) + flops(a.kv_a_proj_with_mqa.weight) +
                            flops(a.kv_b_proj) + flops(a.o_proj.weight);
  if (!layer.is_moe) return attention + mlp_flops(layer.mlp);
  const MoeWeights& moe = layer.moe;
  return attention + flops(moe.gate.weight) +
         (moe.experts.empty() ? 0 : mlp_flops(moe.experts[0]) * config.num_experts_per_tok) +
         (moe.has_shared_experts ? mlp_flops(moe.shared_experts) : 0);
}

}  // namespace

Footprint model_footprint(const Config& config, const ModelWeights& weights) {
  Footprint footprint;
  for (const DecoderLayerWeights& layer : weights.layers) {
    const AttentionWeights& a = layer.self_attn;
    // Decoding reads kv_b_proj in its absorbed form (W_UK^T and W_UV per head): as many values.
    const int64_t attention_bytes = matrix_bytes(a.q_proj.weight) + matrix_bytes(a.q_a_proj.weight) +
                                    matrix_bytes(a.q_b_proj) + matrix_bytes(a.kv_a_proj_with_mqa.weight) +
                                    matrix_bytes(a.kv_b_proj) + matrix_bytes(a.o_proj.weight);
    footprint.weight_bytes += attention_bytes;
    footprint.decode_bytes_per_token += attention_bytes;
    footprint.flops_per_token += layer_flops(config, layer);
    if (!layer.is_moe) {
      footprint.weight_bytes += mlp_bytes(layer.mlp);
      footprint.decode_bytes_per_token += mlp_bytes(layer.mlp);
      continue;
    }
    const MoeWeights& moe = layer.moe;
    int64_t experts_bytes = 0;
    for (const MlpWeights& expert : moe.experts) experts_bytes += mlp_bytes(expert);
    const int64_t shared_bytes = moe.has_shared_experts ? mlp_bytes(moe.shared_experts) : 0;
    const int64_t active_experts_bytes =
        moe.experts.empty() ? 0 : experts_bytes / int64_t(moe.experts.size()) * config.num_experts_per_tok;
    footprint.weight_bytes += matrix_bytes(moe.gate.weight) + experts_bytes + shared_bytes;
    footprint.decode_bytes_per_token += matrix_bytes(moe.gate.weight) + active_experts_bytes + shared_bytes;
  }
  footprint.weight_bytes += matrix_bytes(weights.embed_tokens);
  if (weights.lm_head.data != weights.embed_tokens.data) footprint.weight_bytes += matrix_bytes(weights.lm_head);
  footprint.decode_bytes_per_token +=
      matrix_bytes(weights.lm_head) + weights.embed_tokens.cols * int64_t(dtype_size(weights.embed_tokens.dtype));
  footprint.lm_head_flops = flops(weights.lm_head);
  return footprint;
}

int64_t prefill_attention_flops(const Config& config, int64_t tokens, int64_t depth) {
  const int64_t keys_seen = tokens * depth + tokens * (tokens + 1) / 2;
  const int64_t per_key = 2 * (config.qk_head_dim() + config.v_head_dim);
  return config.num_hidden_layers * config.num_attention_heads * per_key * keys_seen;
}

int64_t prefill_skipped_flops(const Config& config, const ModelWeights& weights, int64_t tokens,
                              int64_t depth) {
  if (tokens < 2 || weights.layers.empty()) return 0;
  // The last layer's products per token, but those every token still runs.
  const DecoderLayerWeights& last = weights.layers.back();
  const int64_t per_token = layer_flops(config, last) -
                            flops(last.self_attn.kv_a_proj_with_mqa.weight) -
                            flops(last.self_attn.kv_b_proj);
  // The last layer's attention products but the last token's.
  Config one_layer = config;
  one_layer.num_hidden_layers = 1;
  const int64_t attention = prefill_attention_flops(one_layer, tokens, depth) -
                            prefill_attention_flops(one_layer, 1, depth + tokens - 1);
  return per_token * (tokens - 1) + attention;
}

}  // namespace dsv3
