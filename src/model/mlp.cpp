#include "model/mlp.h"

#include <vector>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/row_ranges.h"
#include "util/scratch.h"

namespace dsv3 {

void SwigluJob::run_rows(int64_t begin, int64_t end) const {
  const int64_t intermediate = weights->gate_proj.rows;
  if (weights->gate_up.empty()) {  // [tokens][gate], then [tokens][up]
    const float* gate = gate_up + begin * intermediate;
    kernels::silu_mul(gate, gate + tokens * intermediate, (end - begin) * intermediate,
                      activated + begin * intermediate);
    return;
  }
  for (int64_t t = begin; t < end; ++t) {  // [tokens][gate | up]
    const float* row = gate_up + t * 2 * intermediate;
    kernels::silu_mul(row, row + intermediate, intermediate, activated + t * intermediate);
  }
}

void SwigluJob::run() const {
  for_row_ranges(tokens, [this](int64_t begin, int64_t end) { run_rows(begin, end); });
}

void append_gate_up(const MlpWeights& weights, const float* x, int64_t tokens, float* gate_up,
                    float* activated, SwigluJob& job, std::vector<kernels::MatmulItem>& items,
                    const int64_t* x_rows) {
  const int64_t intermediate = weights.gate_proj.rows;
  job = {&weights, gate_up, tokens, activated, !weights.gate_up.empty()};
  auto product = [&](const WeightMatrix& w, float* out) {
    kernels::MatmulItem item{&w, x, tokens, out};
    item.x_rows = x_rows;
    return item;
  };
  if (job.on_completion) {
    kernels::MatmulItem item = product(weights.gate_up, gate_up);
    item.on_done = [](const void* context) { static_cast<const SwigluJob*>(context)->run(); };
    item.context = &job;
    items.push_back(item);
    return;
  }
  items.push_back(product(weights.gate_proj, gate_up));
  items.push_back(product(weights.up_proj, gate_up + tokens * intermediate));
}

void mlp_forward(const MlpWeights& weights, const float* x, int64_t tokens, float* out) {
  const int64_t intermediate = weights.gate_proj.rows;
  thread_local std::vector<float> gate_up, activated;  // grown once, then reused by every call
  thread_local std::vector<kernels::MatmulItem> items;
  grow_scratch(gate_up, tokens * 2 * intermediate);
  grow_scratch(activated, tokens * intermediate);
  items.clear();
  SwigluJob job;
  append_gate_up(weights, x, tokens, gate_up.data(), activated.data(), job, items);
  kernels::matmul_group(items);
  if (!job.on_completion) job.run();
  kernels::matmul(weights.down_proj, activated.data(), tokens, out);
}

}  // namespace dsv3
