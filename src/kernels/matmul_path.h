// Which kernel computes a matrix product: the one decision behind kernels::matmul (and any
// other entry point computing the same products, e.g. grouped products), so that every caller
// gets bitwise the same numbers for a token whatever the batch. Internal to src/kernels.
#pragma once

#include <cstdint>

#include "kernels/simd/isa_kernels.h"
#include "tensor/weight_matrix.h"

namespace dsv3::kernels {

enum class MatmulKernel {
  kReference,    // scalar, double accumulation (DSV3_KERNELS=scalar, or no SIMD form fits)
  kFloatStream,  // float FMA, weights read in their stored format (few tokens)
  kFloatPanel,   // float FMA, weight panels converted to float once for all tokens
  kBf16Stream,   // vdpbf16ps on bf16 activations, weights streamed (few tokens)
  kBf16Panel,    // vdpbf16ps on bf16 activations, weight panels kept in L2 (many tokens)
  kFp8Stream,    // vdpbf16ps, FP8 weights widened to bf16 a few rows at a time (few tokens)
  kFp8Panel,     // the same, widened panels kept in L2 (many tokens)
  kQuantStream,  // Q8/Q4 weights, activations quantized per token (quant_matmul.h), few tokens
  kQuantPanel,   // the same, many tokens
};

struct MatmulPath {
  MatmulKernel kernel = MatmulKernel::kReference;
  // The activations are rounded to bf16 first (rounds_activations_to_bf16(w)); with the float
  // kernels the products of the rounded values are then exact in float.
  bool bf16_activations = false;
  // The float kernels of the active instruction set (kFloatStream / kFloatPanel only).
  const simd::IsaKernels* float_kernels = nullptr;
};

// Up to this many tokens the stream forms: the weights are read from memory once per group of
// 8 tokens (decode); above it the panel forms. Both give bitwise the same result per token.
inline constexpr int64_t kMaxStreamTokens = 8;

// The kernel for `n_tokens` tokens times w under the current kernel set and activation
// precision (or float activations when !allow_bf16_activations). Only the loop form depends on
// n_tokens, never the arithmetic of a token's row.
MatmulPath choose_matmul_path(const WeightMatrix& w, int64_t n_tokens,
                              bool allow_bf16_activations = true);

}  // namespace dsv3::kernels
