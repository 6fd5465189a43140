// The SwiGLU feed-forward network: down_proj(silu(gate_proj(x)) * up_proj(x)).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/matmul.h"
#include "model/weights.h"

namespace dsv3 {

// x is [tokens][hidden], out is [tokens][hidden].
void mlp_forward(const MlpWeights& weights, const float* x, int64_t tokens, float* out);

// The halves of mlp_forward for callers that run many MLPs together (the experts).
//
// The SwiGLU of one MLP on `tokens` rows: silu(gate) * up, from the gate and up products in
// `gate_up` (2 * intermediate * tokens floats, as append_gate_up lays them out) into
// `activated` ([tokens][intermediate]).
struct SwigluJob {
  const MlpWeights* weights = nullptr;
  const float* gate_up = nullptr;
  int64_t tokens = 0;
  float* activated = nullptr;
  bool on_completion = false;  // run by its product as soon as that is done (stacked gate_up)

  void run_rows(int64_t begin, int64_t end) const;
  void run() const;  // every row, over the thread pool
};

// Appends the gate and up projections of `tokens` rows of x to `items` (the rows x_rows picks,
// as kernels::MatmulItem::x_rows, when given): one product of the stacked matrix when the
// checkpoint allows (MlpWeights::gate_up), which then runs `job` itself on completion, while
// its output is in cache; else two products, and the caller runs job.run() once the group is
// done. `job` must outlive the group.
void append_gate_up(const MlpWeights& weights, const float* x, int64_t tokens, float* gate_up,
                    float* activated, SwigluJob& job, std::vector<kernels::MatmulItem>& items,
                    const int64_t* x_rows = nullptr);

}  // namespace dsv3
