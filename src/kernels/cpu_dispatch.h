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

// Whether this CPU has AMX-BF16 (TDPBF16PS) and Linux granted this process the tile state
// (arch_prctl ARCH_REQ_XCOMP_PERM, asked once per process).
bool cpu_has_amx_bf16();
// Whether matmul multiplies BF16 weights with bf16 activations on AMX (kernels/simd/amx_bf16.cpp)
// where the avx512 kernels run: the CPU has it (cpu_has_amx_bf16) and it is allowed. Off unless
// DSV3_AMX=1 (environment) or set_amx_allowed(true) (tests, benchmarks): prefill runs about 2x
// faster, but decode streams the weights at ~15-50% less GB/s than vdpbf16ps so far, and a
// token's bits must not depend on its batch, so decode cannot keep vdpbf16ps for AMX's rows.
bool amx_bf16_active();
bool amx_allowed();
void set_amx_allowed(bool allowed);

// The set in use: DSV3_KERNELS if set (throws dsv3::Error when it names an unknown set or one
// this CPU lacks), else the best supported one.
KernelIsa active_isa();
// Forces a set (tests, benchmarks); throws dsv3::Error if this CPU cannot run it.
void set_active_isa(KernelIsa isa);

}  // namespace dsv3::kernels
