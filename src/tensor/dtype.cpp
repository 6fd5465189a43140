#include "tensor/dtype.h"

#include <array>
#include <cmath>

#include "util/error.h"

namespace dsv3 {

namespace {
struct DTypeEntry {
  DType dtype;
  std::string_view name;
  size_t size;
};
constexpr std::array<DTypeEntry, 11> kDTypes{{
    {DType::F64, "F64", 8},
    {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
}};
}  // namespace

size_t dtype_size(DType dtype) {
  for (const auto& entry : kDTypes)
    if (entry.dtype == dtype) return entry.size;
  return dtype == DType::Q8 ? 1 : 0;
}

std::string_view dtype_name(DType dtype) {
  for (const auto& entry : kDTypes)
    if (entry.dtype == dtype) return entry.name;
  if (dtype == DType::Q8) return "Q8";
  if (dtype == DType::Q4) return "Q4";
  return "?";
}

DType parse_dtype(std::string_view name, const std::string& where) {
  for (const auto& entry : kDTypes)
    if (entry.name == name) return entry.dtype;
  throw Error(where + ": unsupported dtype \"" + std::string(name) + "\"");
}

float f16_to_f32(uint16_t bits) {
  uint32_t sign = uint32_t(bits >> 15) << 31;
  int exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ff;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(float(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa ? NAN : INFINITY;
  } else {
    magnitude = std::ldexp(float(mantissa | 0x400), exponent - 25);
  }
  uint32_t out;
  std::memcpy(&out, &magnitude, 4);
  out |= sign;
  float value;
  std::memcpy(&value, &out, 4);
  return value;
}

uint16_t f32_to_f16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  float magnitude = std::fabs(value);
  if (std::isnan(value)) return sign | 0x7e00;
  if (magnitude >= 65520.0f) return sign | 0x7c00;  // rounds to infinity
  if (magnitude < std::ldexp(1.0f, -14)) {
    // Subnormal: units of 2^-24, round to nearest even.
    float units = magnitude * 16777216.0f;
    return sign | uint16_t(std::nearbyint(units));
  }
  uint32_t abs_bits = bits & 0x7fffffff;
  uint32_t rounded = abs_bits + 0xfff + ((abs_bits >> 13) & 1);
  uint32_t exponent = (rounded >> 23) - 127 + 15;
  uint32_t mantissa = (rounded >> 13) & 0x3ff;
  return sign | uint16_t(exponent << 10) | uint16_t(mantissa);
}

float fp8_e4m3_to_f32(uint8_t bits) {
  float sign = (bits & 0x80) ? -1.0f : 1.0f;
  int exponent = (bits >> 3) & 0xf;
  int mantissa = bits & 0x7;
  if (exponent == 0xf && mantissa == 0x7) return NAN;
  if (exponent == 0) return sign * std::ldexp(float(mantissa), -9);  // subnormal: m/8 * 2^-6
  return sign * std::ldexp(float(8 + mantissa), exponent - 10);
}

uint8_t f32_to_fp8_e4m3(float value) {
  if (std::isnan(value)) return 0x7f;
  uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  float magnitude = std::fabs(value);
  if (magnitude >= 448.0f) return sign | 0x7e;
  // Find the nearest representable value by rounding in the right binade.
  int exponent;
  std::frexp(magnitude, &exponent);  // magnitude = f * 2^exponent, f in [0.5, 1)
  int unbiased = exponent - 1;       // magnitude in [2^unbiased, 2^(unbiased+1))
  if (unbiased < -6) unbiased = -6;  // subnormal range shares the 2^-6 step size / 8
  float step = std::ldexp(1.0f, unbiased - 3);
  float units = std::nearbyint(magnitude / step);  // ties to even (default rounding mode)
  float rounded = units * step;
  if (rounded >= 448.0f) return sign | 0x7e;
  if (rounded == 0.0f) return sign;
  int out_exponent;
  std::frexp(rounded, &out_exponent);
  int biased = out_exponent - 1 + 7;
  if (biased <= 0) return sign | uint8_t(rounded / std::ldexp(1.0f, -9));  // subnormal
  int mantissa = int(rounded / std::ldexp(1.0f, out_exponent - 1 - 3)) - 8;
  return sign | uint8_t(biased << 3) | uint8_t(mantissa);
}

}  // namespace dsv3
