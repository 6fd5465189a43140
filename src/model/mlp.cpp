#include "model/mlp.h"

#include <vector>

#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace dsv3 {

void mlp_forward(const MlpWeights& weights, const float* x, int64_t tokens, float* out) {
  const int64_t intermediate = weights.gate_proj.rows;
  std::vector<float> gate(tokens * intermediate), up(tokens * intermediate);
  kernels::matmul(weights.gate_proj, x, tokens, gate.data());
  kernels::matmul(weights.up_proj, x, tokens, up.data());
  kernels::silu_mul(gate.data(), up.data(), tokens * intermediate);
  kernels::matmul(weights.down_proj, gate.data(), tokens, out);
}

}  // namespace dsv3
