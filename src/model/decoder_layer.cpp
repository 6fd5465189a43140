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

}  // namespace

void decoder_layer_forward(const Config& config, const Rope& rope, const DecoderLayerWeights& weights,
                           int64_t layer, const TokenBatch& batch, float* hidden) {
  const int64_t tokens = batch.tokens, width = config.hidden_size;
  thread_local std::vector<float> thread_normed, thread_branch;  // grown once, then reused
  std::vector<float>& normed = thread_normed;
  std::vector<float>& branch = thread_branch;
  grow_scratch(normed, tokens * width);
  grow_scratch(branch, tokens * width);

  {
    profile::Phase phase("norm+residual");
    rms_norm_rows(weights.input_layernorm, hidden, tokens, width, normed.data());
  }
  mla_attention(config, rope, weights.self_attn, layer, normed.data(), batch, branch.data());
  {
    profile::Phase phase("norm+residual");
    add_rows(branch.data(), tokens, width, hidden);
    rms_norm_rows(weights.post_attention_layernorm, hidden, tokens, width, normed.data());
  }
  if (weights.is_moe) {
    moe_forward(config, weights.moe, normed.data(), tokens, branch.data(), batch.routing_log,
                layer);
  } else {
    profile::Phase phase("mlp.dense");
    mlp_forward(weights.mlp, normed.data(), tokens, branch.data());
  }
  profile::Phase phase("norm+residual");
  add_rows(branch.data(), tokens, width, hidden);
}

void decoder_layer_write_cache(const Config& config, const Rope& rope,
                               const DecoderLayerWeights& weights, int64_t layer,
                               const TokenBatch& batch, const float* hidden) {
  thread_local std::vector<float> thread_normed;
  std::vector<float>& normed = thread_normed;
  grow_scratch(normed, batch.tokens * config.hidden_size);
  {
    profile::Phase phase("norm+residual");
    rms_norm_rows(weights.input_layernorm, hidden, batch.tokens, config.hidden_size,
                  normed.data());
  }
  mla_write_cache(config, rope, weights.self_attn, layer, normed.data(), batch);
}

}  // namespace dsv3
