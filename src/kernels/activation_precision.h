// The precision the activations of BF16- and FP8-weight matrix products are multiplied at.
//
// With BF16 weights, a CPU with AVX512_BF16 multiplies bf16 x bf16 pairs at twice its float FMA
// rate (vdpbf16ps), so by default the activations are rounded to bf16 (round to nearest even)
// for those products, exactly as llama.cpp and torch in bfloat16 do, accumulating in float.
// Every token's row stays bitwise the same alone or in any batch (the rounding is per element,
// the dot product order fixed). The exact float products remain available process-wide:
//   DSV3_ACTIVATIONS=f32|bf16|auto (environment), `--activations` (command line),
//   set_activation_precision (library).
// FP8 weights follow the same setting: their e4m3 values are exact in bf16, and the block scale
// rides on the activations, each rounded once per scale row (simd/fp8_bf16_avx512.cpp).
// Weights of other formats (F32, F16) are always multiplied with float activations.
#pragma once

#include <string_view>

#include "tensor/weight_matrix.h"

namespace dsv3::kernels {

enum class ActivationPrecision {
  kAuto,  // bf16 where vdpbf16ps runs (avx512 kernels on an AVX512_BF16 CPU), else f32
  kF32,   // exact float activations everywhere
  kBf16,  // activations rounded to bf16 for BF16 and FP8 weights on every kernel set (scalar too)
};

std::string_view activation_precision_name(ActivationPrecision precision);
// "auto", "f32" or "bf16"; throws dsv3::Error naming `what` otherwise.
ActivationPrecision parse_activation_precision(std::string_view name, std::string_view what);

// The setting in use: DSV3_ACTIVATIONS if set (throws dsv3::Error when it is not a known name),
// else kAuto.
ActivationPrecision activation_precision();
void set_activation_precision(ActivationPrecision precision);

// Whether matmul(w, ...) (and matmul_reference) rounds the activations to bf16 under the
// current setting and kernel set.
bool rounds_activations_to_bf16(const WeightMatrix& w);

}  // namespace dsv3::kernels
