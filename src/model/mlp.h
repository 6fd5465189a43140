// The SwiGLU feed-forward network: down_proj(silu(gate_proj(x)) * up_proj(x)).
#pragma once

#include <cstdint>

#include "model/weights.h"

namespace dsv3 {

// x is [tokens][hidden], out is [tokens][hidden].
void mlp_forward(const MlpWeights& weights, const float* x, int64_t tokens, float* out);

}  // namespace dsv3
