#include "kernels/cpu_dispatch.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "util/error.h"

namespace dsv3::kernels {

namespace {

constexpr int kUnset = -1;
std::atomic<int> g_active_isa{kUnset};

KernelIsa best_supported_isa() {
  if (isa_supported(KernelIsa::kAvx512)) return KernelIsa::kAvx512;
  if (isa_supported(KernelIsa::kAvx2)) return KernelIsa::kAvx2;
  return KernelIsa::kScalar;
}

KernelIsa isa_from_environment() {
  const char* forced = std::getenv("DSV3_KERNELS");
  if (forced == nullptr || *forced == '\0') return best_supported_isa();
  const std::string_view name(forced);
  for (KernelIsa isa : {KernelIsa::kScalar, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    if (name != isa_name(isa)) continue;
    if (!isa_supported(isa)) {
      throw Error("DSV3_KERNELS=" + std::string(name) + ": this CPU does not support it");
    }
    return isa;
  }
  throw Error("DSV3_KERNELS=" + std::string(name) +
              ": unknown kernel set (expected scalar, avx2 or avx512)");
}

}  // namespace

std::string_view isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar:
      return "scalar";
    case KernelIsa::kAvx2:
      return "avx2";
    case KernelIsa::kAvx512:
      return "avx512";
  }
  return "?";
}

bool isa_supported(KernelIsa isa) {
#if defined(__x86_64__) || defined(__i386__)
  switch (isa) {
    case KernelIsa::kScalar:
      return true;
    case KernelIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case KernelIsa::kAvx512:
      return isa_supported(KernelIsa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  }
  return false;
#else
  return isa == KernelIsa::kScalar;
#endif
}

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) && (__GNUC__ >= 12)
  return isa_supported(KernelIsa::kAvx512) && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

bool cpu_has_avx512_vnni() {
#if defined(__x86_64__)
  return isa_supported(KernelIsa::kAvx512) && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

KernelIsa active_isa() {
  int isa = g_active_isa.load(std::memory_order_relaxed);
  if (isa == kUnset) {
    isa = int(isa_from_environment());
    g_active_isa.store(isa, std::memory_order_relaxed);
  }
  return KernelIsa(isa);
}

void set_active_isa(KernelIsa isa) {
  if (!isa_supported(isa)) {
    throw Error("kernel set " + std::string(isa_name(isa)) + " is not supported by this CPU");
  }
  g_active_isa.store(int(isa), std::memory_order_relaxed);
}

}  // namespace dsv3::kernels
