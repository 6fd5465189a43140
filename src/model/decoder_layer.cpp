#include "model/decoder_layer.h"

#include <vector>

#include "kernels/ops.h"
#include "model/mlp.h"
#include "model/moe.h"

namespace dsv3 {

namespace {

void rms_norm_rows(const RmsNormWeights& norm, const float* x, int64_t tokens, int64_t width,
                   float* out) {
  for (int64_t t = 0; t < tokens; ++t)
    kernels::rms_norm(x + t * width, norm.weight.data(), width, norm.eps, out + t * width);
}

}  // namespace

void decoder_layer_forward(const Config& config, const Rope& rope, const DecoderLayerWeights& weights,
                           int64_t layer, const TokenBatch& batch, float* hidden) {
  const int64_t tokens = batch.tokens, width = config.hidden_size;
  thread_local std::vector<float> normed, branch;  // grown once, then reused by every call
  normed.resize(tokens * width);
  branch.resize(tokens * width);

  rms_norm_rows(weights.input_layernorm, hidden, tokens, width, normed.data());
  mla_attention(config, rope, weights.self_attn, layer, normed.data(), batch, branch.data());
  for (int64_t i = 0; i < tokens * width; ++i) hidden[i] += branch[i];

  rms_norm_rows(weights.post_attention_layernorm, hidden, tokens, width, normed.data());
  if (weights.is_moe)
    moe_forward(config, weights.moe, normed.data(), tokens, branch.data());
  else
    mlp_forward(weights.mlp, normed.data(), tokens, branch.data());
  for (int64_t i = 0; i < tokens * width; ++i) hidden[i] += branch[i];
}

}  // namespace dsv3
