#include "model/decoder_layer.h"

#include <vector>

#include "kernels/ops.h"
#include "model/mlp.h"
#include "model/moe.h"
#include "model/row_ranges.h"
#include "util/phase_profile.h"
#include "util/scratch.h"

namespace dsv3 {

namespace {

void rms_norm_rows(const RmsNormWeights& norm, const float* x, int64_t tokens, int64_t width,
                   float* out) {
  for_row_ranges(tokens, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      kernels::rms_norm(x + t * width, norm.weight.data(), width, norm.eps, out + t * width);
  });
}

// hidden += branch, row by row.
void add_rows(const float* branch, int64_t tokens, int64_t width, float* hidden) {
  for_row_ranges(tokens, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * width; i < end * width; ++i) hidden[i] += branch[i];
  });
}

// input_layernorm of the layer's input rows, into a buffer kept by the thread (the layer's
// normed rows: decoder_layer_forward reuses it for post_attention_layernorm).
float* input_normed(const DecoderLayerWeights& weights, const float* hidden, int64_t tokens,
                    int64_t width) {
  thread_local std::vector<float> thread_normed;  // grown once, then reused
  float* normed = grow_scratch(thread_normed, tokens * width);
  profile::Phase phase("norm+residual");
  rms_norm_rows(weights.input_layernorm, hidden, tokens, width, normed);
  return normed;
}

}  // namespace

void decoder_layer_forward(const Config& config, const Rope& rope, const DecoderLayerWeights& weights,
                           int64_t layer, const TokenBatch& batch, float* hidden) {
  const int64_t tokens = batch.tokens, width = config.hidden_size;
  thread_local std::vector<float> thread_branch;  // grown once, then reused
  float* branch = grow_scratch(thread_branch, tokens * width);

  float* normed = input_normed(weights, hidden, tokens, width);
  mla_attention(config, rope, weights.self_attn, layer, normed, batch, branch);
  {
    profile::Phase phase("norm+residual");
    add_rows(branch, tokens, width, hidden);
    rms_norm_rows(weights.post_attention_layernorm, hidden, tokens, width, normed);
  }
  if (weights.is_moe) {
    moe_forward(config, weights.moe, normed, tokens, branch, batch.routing_log, layer);
  } else {
    profile::Phase phase("mlp.dense");
    mlp_forward(weights.mlp, normed, tokens, branch);
  }
  profile::Phase phase("norm+residual");
  add_rows(branch, tokens, width, hidden);
}

void decoder_layer_write_cache(const Config& config, const Rope& rope,
                               const DecoderLayerWeights& weights, int64_t layer,
                               const TokenBatch& batch, const float* hidden) {
  mla_write_cache(config, rope, weights.self_attn, layer,
                  input_normed(weights, hidden, batch.tokens, config.hidden_size), batch);
}

}  // namespace dsv3
