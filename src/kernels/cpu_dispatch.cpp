#include "kernels/cpu_dispatch.h"

#include <atomic>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

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

bool cpu_has_amx_bf16() {
#if defined(__x86_64__) && defined(__linux__) && (__GNUC__ >= 12)
  static const bool usable = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    constexpr unsigned kAmxBf16 = 1u << 22, kAmxTile = 1u << 24;  // CPUID.(7,0):EDX
    if ((edx & kAmxBf16) == 0 || (edx & kAmxTile) == 0 || !cpu_has_avx512_bf16()) return false;
    // Linux hands out the 8 KB of tile data (XFEATURE_XTILEDATA = 18) to a process only on
    // request; once granted, every thread of the process may use the tiles.
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
#else
  return false;
#endif
}

namespace {
std::atomic<int> g_amx_allowed{kUnset};
}  // namespace

bool amx_allowed() {
  int allowed = g_amx_allowed.load(std::memory_order_relaxed);
  if (allowed == kUnset) {
    const char* setting = std::getenv("DSV3_AMX");
    allowed = setting != nullptr && std::string_view(setting) == "1";
    g_amx_allowed.store(allowed, std::memory_order_relaxed);
  }
  return allowed != 0;
}

void set_amx_allowed(bool allowed) { g_amx_allowed.store(allowed, std::memory_order_relaxed); }

bool amx_bf16_active() {
  return active_isa() == KernelIsa::kAvx512 && amx_allowed() && cpu_has_amx_bf16();
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
