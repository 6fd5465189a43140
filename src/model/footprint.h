// How much of the model one token touches: the weight bytes read to decode a token (active
// experts only) and the multiply-adds of a forward pass, for benchmarks and their roofline.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/weights.h"

namespace dsv3 {

struct Footprint {
  int64_t weight_bytes = 0;            // every weight matrix of the main layers and heads
  int64_t decode_bytes_per_token = 0;  // weights read for one decoded token (with lm_head)
  int64_t flops_per_token = 0;         // 2 x multiply-adds of the matrix products, no lm_head
  int64_t lm_head_flops = 0;           // 2 x multiply-adds of the lm_head for one token
};

Footprint model_footprint(const Config& config, const ModelWeights& weights);

// Bytes of one weight matrix as stored (with its block scales).
int64_t matrix_bytes(const WeightMatrix& matrix);

}  // namespace dsv3
