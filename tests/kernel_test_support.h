// Helpers the kernel tests share: random inputs and the instruction sets this CPU runs.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu_dispatch.h"

namespace dsv3::kernels {

// n normal values (mean 0, `stddev`), the same for the same seed.
inline std::vector<float> random_floats(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> values(static_cast<size_t>(n));
  for (auto& v : values) v = normal(rng);
  return values;
}

// Every kernel set this CPU can run, scalar first.
inline std::vector<KernelIsa> supported_isas() {
  std::vector<KernelIsa> isas;
  for (KernelIsa isa : {KernelIsa::kScalar, KernelIsa::kAvx2, KernelIsa::kAvx512})
    if (isa_supported(isa)) isas.push_back(isa);
  return isas;
}

}  // namespace dsv3::kernels
