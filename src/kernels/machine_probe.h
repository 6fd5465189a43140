// Measurements of this machine's physical limits, so benchmarks can print every figure as a
// share of what the hardware allows: memory read bandwidth (a STREAM-like sum over a buffer
// far larger than the caches) and peak arithmetic (an unrolled FMA / BF16 dot-product loop on
// every thread of the pool).
#pragma once

#include <cstdint>

namespace dsv3::kernels {

// GB/s (1e9 bytes/s) reading `bytes` with all pool threads; best of `repetitions`.
double measure_read_bandwidth(int64_t bytes = int64_t(1) << 30, int repetitions = 5);

// GFLOP/s (a multiply-add counts 2) of float32 FMA on all pool threads.
double measure_peak_gflops_f32();
// GFLOP/s of the AVX-512 BF16 dot product (vdpbf16ps: 32 multiply-adds per instruction);
// 0 when the CPU has no AVX512_BF16.
double measure_peak_gflops_bf16();

}  // namespace dsv3::kernels
