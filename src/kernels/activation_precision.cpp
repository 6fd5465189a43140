#include "kernels/activation_precision.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "kernels/cpu_dispatch.h"
#include "util/error.h"

namespace dsv3::kernels {

namespace {

constexpr int kUnset = -1;
std::atomic<int> g_precision{kUnset};

ActivationPrecision precision_from_environment() {
  const char* name = std::getenv("DSV3_ACTIVATIONS");
  if (name == nullptr || *name == '\0') return ActivationPrecision::kAuto;
  return parse_activation_precision(name, "DSV3_ACTIVATIONS");
}

}  // namespace

std::string_view activation_precision_name(ActivationPrecision precision) {
  switch (precision) {
    case ActivationPrecision::kAuto:
      return "auto";
    case ActivationPrecision::kF32:
      return "f32";
    case ActivationPrecision::kBf16:
      return "bf16";
  }
  return "?";
}

ActivationPrecision parse_activation_precision(std::string_view name, std::string_view what) {
  for (ActivationPrecision precision :
       {ActivationPrecision::kAuto, ActivationPrecision::kF32, ActivationPrecision::kBf16}) {
    if (name == activation_precision_name(precision)) return precision;
  }
  throw Error(std::string(what) + "=" + std::string(name) +
              ": unknown activation precision (expected f32, bf16 or auto)");
}

ActivationPrecision activation_precision() {
  int precision = g_precision.load(std::memory_order_relaxed);
  if (precision == kUnset) {
    precision = int(precision_from_environment());
    g_precision.store(precision, std::memory_order_relaxed);
  }
  return ActivationPrecision(precision);
}

void set_activation_precision(ActivationPrecision precision) {
  g_precision.store(int(precision), std::memory_order_relaxed);
}

bool rounds_activations_to_bf16(const WeightMatrix& w) {
  if (w.dtype != DType::BF16 && w.dtype != DType::F8_E4M3) return false;
  switch (activation_precision()) {
    case ActivationPrecision::kF32:
      return false;
    case ActivationPrecision::kBf16:
      return true;
    case ActivationPrecision::kAuto:
      return active_isa() == KernelIsa::kAvx512 && cpu_has_avx512_bf16();
  }
  return false;
}

}  // namespace dsv3::kernels
