// Which instruction set the kernels use, chosen once at run time from the CPU's features (the
// library is compiled without -march flags, so one binary runs everywhere). The environment
// variable DSV3_KERNELS=scalar|avx2|avx512 forces a set, for tests and benchmarks.
#pragma once

#include <string_view>

namespace dsv3::kernels {

enum class KernelIsa {
  kScalar,  // plain C++: any CPU
  kAvx2,    // AVX2 + FMA + F16C (Haswell, Zen 1 and later)
  kAvx512,  // AVX-512 F/BW/VL + F16C + FMA (Skylake-X, Zen 4 and later)
};

std::string_view isa_name(KernelIsa isa);
// Whether this CPU can run the kernels of `isa`.
bool isa_supported(KernelIsa isa);
// Whether this CPU has AVX512_BF16 (vdpbf16ps), which matmul uses for BF16 weights
// (activation_precision.h).
bool cpu_has_avx512_bf16();
// Whether this CPU has AVX512_VNNI (vpdpbusd), used by the Q4 weight kernel.
bool cpu_has_avx512_vnni();

// The set in use: DSV3_KERNELS if set (throws dsv3::Error when it names an unknown set or one
// this CPU lacks), else the best supported one.
KernelIsa active_isa();
// Forces a set (tests, benchmarks); throws dsv3::Error if this CPU cannot run it.
void set_active_isa(KernelIsa isa);

}  // namespace dsv3::kernels
