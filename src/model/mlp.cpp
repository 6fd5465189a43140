#include "model/mlp.h"

#include <vector>

#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace dsv3 {

void mlp_forward(const MlpWeights& weights, const float* x, int64_t tokens, float* out) {
  const int64_t intermediate = weights.gate_proj.rows;
  thread_local std::vector<float> gate, up;  // grown once, then reused by every call
  gate.resize(tokens * intermediate);
  up.resize(tokens * intermediate);
  const kernels::MatmulItem gate_and_up[] = {{&weights.gate_proj, x, tokens, gate.data()},
                                             {&weights.up_proj, x, tokens, up.data()}};
  kernels::matmul_group(gate_and_up);
  kernels::silu_mul(gate.data(), up.data(), tokens * intermediate);
  kernels::matmul(weights.down_proj, gate.data(), tokens, out);
}

}  // namespace dsv3
