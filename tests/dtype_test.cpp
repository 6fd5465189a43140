// The bf16 / f16 / fp8-e4m3 conversions of tensor/dtype.h, checked against formulas written
// independently here: every code decoded, every code round-tripped, every halfway point between
// neighbouring codes rounded to the even code, and a sweep over float32 bit patterns compared
// with a brute-force nearest-code search.
#include "tensor/dtype.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "util/error.h"

namespace dsv3 {
namespace {

uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}

float float_from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

// Value of a sign/exponent/mantissa code, IEEE style (subnormals at exponent 0), in double.
// `max_exponent_is_special`: the all-ones exponent means inf/NaN (bf16, f16), not for e4m3.
double decode_reference(uint32_t code, int exponent_bits, int mantissa_bits, int bias) {
  const uint32_t mantissa = code & ((1u << mantissa_bits) - 1);
  const uint32_t exponent = (code >> mantissa_bits) & ((1u << exponent_bits) - 1);
  const bool negative = (code >> (mantissa_bits + exponent_bits)) & 1;
  double magnitude;
  if (exponent == 0)
    magnitude = std::ldexp(double(mantissa), 1 - bias - mantissa_bits);
  else
    magnitude =
        std::ldexp(double(mantissa + (1u << mantissa_bits)), int(exponent) - bias - mantissa_bits);
  return negative ? -magnitude : magnitude;
}

double bf16_reference(uint16_t code) { return decode_reference(code, 8, 7, 127); }
double f16_reference(uint16_t code) { return decode_reference(code, 5, 10, 15); }
double e4m3_reference(uint8_t code) { return decode_reference(code, 4, 3, 7); }

bool bf16_is_nan(uint16_t code) { return (code & 0x7f80) == 0x7f80 && (code & 0x7f); }
bool bf16_is_inf(uint16_t code) { return (code & 0x7fff) == 0x7f80; }
bool f16_is_nan(uint16_t code) { return (code & 0x7c00) == 0x7c00 && (code & 0x3ff); }
bool f16_is_inf(uint16_t code) { return (code & 0x7fff) == 0x7c00; }
bool e4m3_is_nan(uint8_t code) { return (code & 0x7f) == 0x7f; }

// The non-negative codes of a format in increasing order with their values. For formats with
// infinity, infinity is listed as the value the next binade would give (2^(emax+1)): IEEE
// round-to-nearest sends everything at or beyond the halfway point to max to infinity.
struct Ladder {
  std::vector<double> values;
  std::vector<uint32_t> codes;
};

// Nearest code to `magnitude` (>= 0) on the ladder, ties to the even code; beyond the top rung
// the top rung (saturation for e4m3, infinity for the others).
uint32_t nearest_code(const Ladder& ladder, double magnitude) {
  auto upper = std::lower_bound(ladder.values.begin(), ladder.values.end(), magnitude);
  if (upper == ladder.values.end()) return ladder.codes.back();
  size_t high = size_t(upper - ladder.values.begin());
  if (*upper == magnitude || high == 0) return ladder.codes[high];
  size_t low = high - 1;
  double below = magnitude - ladder.values[low];
  double above = ladder.values[high] - magnitude;
  if (below < above) return ladder.codes[low];
  if (above < below) return ladder.codes[high];
  return (ladder.codes[low] & 1) ? ladder.codes[high] : ladder.codes[low];
}

Ladder bf16_ladder() {
  Ladder ladder;
  for (uint32_t code = 0; code < 0x7f80; ++code) {
    ladder.values.push_back(bf16_reference(uint16_t(code)));
    ladder.codes.push_back(code);
  }
  ladder.values.push_back(std::ldexp(1.0, 128));
  ladder.codes.push_back(0x7f80);
  return ladder;
}

Ladder f16_ladder() {
  Ladder ladder;
  for (uint32_t code = 0; code < 0x7c00; ++code) {
    ladder.values.push_back(f16_reference(uint16_t(code)));
    ladder.codes.push_back(code);
  }
  ladder.values.push_back(65536.0);
  ladder.codes.push_back(0x7c00);
  return ladder;
}

Ladder e4m3_ladder() {
  Ladder ladder;
  for (uint32_t code = 0; code < 0x7f; ++code) {
    ladder.values.push_back(e4m3_reference(uint8_t(code)));
    ladder.codes.push_back(code);
  }
  return ladder;
}

// ---------------------------------------------------------------------------------------------
// Decoding every code.

TEST(DTypeTest, Bf16DecodesEveryCode) {
  for (uint32_t code = 0; code < 0x10000; ++code) {
    float value = bf16_to_f32(uint16_t(code));
    if (bf16_is_nan(uint16_t(code))) {
      EXPECT_TRUE(std::isnan(value)) << std::hex << code;
    } else if (bf16_is_inf(uint16_t(code))) {
      EXPECT_EQ(value, (code & 0x8000) ? -INFINITY : INFINITY) << std::hex << code;
    } else {
      EXPECT_EQ(double(value), bf16_reference(uint16_t(code))) << std::hex << code;
      EXPECT_EQ(std::signbit(value), bool(code & 0x8000)) << std::hex << code;
    }
  }
}

TEST(DTypeTest, F16DecodesEveryCode) {
  for (uint32_t code = 0; code < 0x10000; ++code) {
    float value = f16_to_f32(uint16_t(code));
    if (f16_is_nan(uint16_t(code))) {
      EXPECT_TRUE(std::isnan(value)) << std::hex << code;
    } else if (f16_is_inf(uint16_t(code))) {
      EXPECT_EQ(value, (code & 0x8000) ? -INFINITY : INFINITY) << std::hex << code;
    } else {
      EXPECT_EQ(double(value), f16_reference(uint16_t(code))) << std::hex << code;
      EXPECT_EQ(std::signbit(value), bool(code & 0x8000)) << std::hex << code;
    }
  }
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
}

TEST(DTypeTest, Fp8E4m3DecodesEveryCode) {
  for (uint32_t code = 0; code < 0x100; ++code) {
    float value = fp8_e4m3_to_f32(uint8_t(code));
    if (e4m3_is_nan(uint8_t(code))) {
      EXPECT_TRUE(std::isnan(value)) << std::hex << code;
    } else {
      EXPECT_EQ(double(value), e4m3_reference(uint8_t(code))) << std::hex << code;
      EXPECT_FALSE(std::isinf(value)) << std::hex << code;  // e4m3fn has no infinities
    }
  }
  // The anchors from the OCP FP8 specification.
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8_e4m3_to_f32(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x77), 240.0f);  // exponent 14, mantissa 7: 1.875 * 2^7
  EXPECT_EQ(fp8_e4m3_to_f32(0x78), 256.0f);  // exponent 15 holds normal numbers, unlike IEEE
}

// ---------------------------------------------------------------------------------------------
// Round trips: code -> float -> code is the identity for every non-NaN code (signed zeros too).

TEST(DTypeTest, Bf16RoundTripsEveryCode) {
  for (uint32_t code = 0; code < 0x10000; ++code) {
    if (bf16_is_nan(uint16_t(code))) continue;
    EXPECT_EQ(f32_to_bf16(bf16_to_f32(uint16_t(code))), code) << std::hex << code;
  }
}

TEST(DTypeTest, F16RoundTripsEveryCode) {
  for (uint32_t code = 0; code < 0x10000; ++code) {
    if (f16_is_nan(uint16_t(code))) continue;
    EXPECT_EQ(f32_to_f16(f16_to_f32(uint16_t(code))), code) << std::hex << code;
  }
}

TEST(DTypeTest, Fp8E4m3RoundTripsEveryCode) {
  for (uint32_t code = 0; code < 0x100; ++code) {
    if (e4m3_is_nan(uint8_t(code))) continue;
    EXPECT_EQ(f32_to_fp8_e4m3(fp8_e4m3_to_f32(uint8_t(code))), code) << std::hex << code;
  }
}

TEST(DTypeTest, NanStaysNan) {
  const float quiet = std::numeric_limits<float>::quiet_NaN();
  const float signalling = float_from_bits(0x7f800001);  // would become inf if truncated
  for (float nan : {quiet, -quiet, signalling, float_from_bits(0xff800001)}) {
    EXPECT_TRUE(bf16_is_nan(f32_to_bf16(nan)));
    EXPECT_TRUE(f16_is_nan(f32_to_f16(nan)));
    EXPECT_TRUE(e4m3_is_nan(f32_to_fp8_e4m3(nan)));
  }
}

// ---------------------------------------------------------------------------------------------
// Rounding: halfway points between neighbours go to the even code; one float above or below
// goes to the nearer one.

// Checks x, and the floats just below and above x, against the brute-force nearest code, for
// both signs. `sign_bit` is where the format keeps its sign.
void expect_rounds_like_reference(const std::function<uint32_t(float)>& convert,
                                  const Ladder& ladder, uint32_t sign_bit, float x,
                                  const char* format) {
  for (float probe : {x, std::nextafter(x, 0.0f), std::nextafter(x, INFINITY)}) {
    uint32_t expected = nearest_code(ladder, double(probe));
    ASSERT_EQ(convert(probe), expected)
        << format << " of " << probe << " (bits 0x" << std::hex << float_bits(probe) << ")";
    ASSERT_EQ(convert(-probe), expected | sign_bit) << format << " of " << -probe;
  }
}

TEST(DTypeTest, HalfwayPointsRoundToEven) {
  struct Format {
    const char* name;
    Ladder ladder;
    std::function<uint32_t(float)> convert;
    uint32_t sign_bit;
  };
  std::vector<Format> formats;
  formats.push_back(
      {"bf16", bf16_ladder(), [](float x) { return uint32_t(f32_to_bf16(x)); }, 0x8000});
  formats.push_back({"f16", f16_ladder(), [](float x) { return uint32_t(f32_to_f16(x)); }, 0x8000});
  formats.push_back(
      {"e4m3", e4m3_ladder(), [](float x) { return uint32_t(f32_to_fp8_e4m3(x)); }, 0x80});
  for (const Format& format : formats) {
    const auto& values = format.ladder.values;
    for (size_t i = 0; i + 1 < values.size(); ++i) {
      double halfway = (values[i] + values[i + 1]) / 2;
      if (halfway > std::numeric_limits<float>::max()) continue;  // bf16's top half-step
      float x = float(halfway);
      ASSERT_EQ(double(x), halfway) << format.name << ": halfway point not exact in float";
      expect_rounds_like_reference(format.convert, format.ladder, format.sign_bit, x, format.name);
      // The halfway point itself, spelled out: the code with the even mantissa wins.
      uint32_t even =
          (format.ladder.codes[i] & 1) ? format.ladder.codes[i + 1] : format.ladder.codes[i];
      ASSERT_EQ(format.convert(x), even) << format.name << " halfway at " << x;
    }
  }
}

TEST(DTypeTest, SweepOverFloat32MatchesNearestCode) {
  const Ladder bf16 = bf16_ladder(), f16 = f16_ladder(), e4m3 = e4m3_ladder();
  // A prime stride visits every exponent and a spread of mantissas, subnormals included.
  for (uint64_t bits = 0; bits < 0x7f800000u; bits += 997) {
    float x = float_from_bits(uint32_t(bits));
    ASSERT_EQ(f32_to_bf16(x), nearest_code(bf16, x)) << "bf16 of bits 0x" << std::hex << bits;
    ASSERT_EQ(f32_to_f16(x), nearest_code(f16, x)) << "f16 of bits 0x" << std::hex << bits;
    ASSERT_EQ(f32_to_fp8_e4m3(x), nearest_code(e4m3, x)) << "e4m3 of bits 0x" << std::hex << bits;
    ASSERT_EQ(f32_to_f16(-x), nearest_code(f16, x) | 0x8000) << "f16 of -bits 0x" << bits;
    ASSERT_EQ(f32_to_fp8_e4m3(-x), nearest_code(e4m3, x) | 0x80) << "e4m3 of -bits 0x" << bits;
  }
}

// ---------------------------------------------------------------------------------------------
// The edges: overflow, saturation, subnormals, signed zero.

TEST(DTypeTest, Fp8SaturatesTo448) {
  EXPECT_EQ(f32_to_fp8_e4m3(448.0f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(463.99f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(464.0f), 0x7e);  // halfway to the (nonexistent) 480: saturates
  EXPECT_EQ(f32_to_fp8_e4m3(1e6f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(std::numeric_limits<float>::max()), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(INFINITY), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(-INFINITY), 0xfe);
  EXPECT_EQ(f32_to_fp8_e4m3(-1e6f), 0xfe);
  // The top binade is 256, 288, ..., 416 (0x7d), 448 (0x7e), in steps of 32.
  EXPECT_EQ(f32_to_fp8_e4m3(416.0f), 0x7d);
  EXPECT_EQ(f32_to_fp8_e4m3(432.0f), 0x7e);  // halfway 416 | 448: 0x7e has the even mantissa
  EXPECT_EQ(f32_to_fp8_e4m3(400.0f), 0x7c);  // halfway 384 | 416: 0x7c is even
}

TEST(DTypeTest, Fp8Subnormals) {
  const float step = std::ldexp(1.0f, -9);
  EXPECT_EQ(f32_to_fp8_e4m3(step), 0x01);
  EXPECT_EQ(f32_to_fp8_e4m3(step / 2), 0x00);  // tie with zero: zero is even
  EXPECT_EQ(f32_to_fp8_e4m3(std::nextafter(step / 2, 1.0f)), 0x01);
  EXPECT_EQ(f32_to_fp8_e4m3(1.5f * step), 0x02);  // tie 1 | 2: 2 is even
  EXPECT_EQ(f32_to_fp8_e4m3(2.5f * step), 0x02);  // tie 2 | 3
  EXPECT_EQ(f32_to_fp8_e4m3(7.5f * step), 0x08);  // tie 7 | 8 (smallest normal)
  EXPECT_EQ(f32_to_fp8_e4m3(std::numeric_limits<float>::denorm_min()), 0x00);
  EXPECT_EQ(f32_to_fp8_e4m3(-std::numeric_limits<float>::denorm_min()), 0x80);
  EXPECT_EQ(f32_to_fp8_e4m3(0.0f), 0x00);
  EXPECT_EQ(f32_to_fp8_e4m3(-0.0f), 0x80);
}

TEST(DTypeTest, F16OverflowAndSubnormals) {
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.99f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // halfway to 65536: rounds to infinity (even)
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7c00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  const float step = std::ldexp(1.0f, -24);
  EXPECT_EQ(f32_to_f16(step), 0x0001);
  EXPECT_EQ(f32_to_f16(step / 2), 0x0000);
  EXPECT_EQ(f32_to_f16(std::nextafter(step / 2, 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(1023.5f * step), 0x0400);  // tie 0x3ff | 0x400: carries into normal
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie 1 | 1+2^-10
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie 1+2^-10 | 1+2^-9
}

TEST(DTypeTest, Bf16OverflowAndSubnormals) {
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to inf
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-INFINITY), 0xff80);
  EXPECT_EQ(f32_to_bf16(float_from_bits(0x7f7f7fff)), 0x7f7f);  // just below the halfway point
  EXPECT_EQ(f32_to_bf16(float_from_bits(0x00008000)), 0x0000);  // subnormal tie to even 0
  EXPECT_EQ(f32_to_bf16(float_from_bits(0x00018000)), 0x0002);  // subnormal tie 1 | 2
  EXPECT_EQ(f32_to_bf16(float_from_bits(0x00008001)), 0x0001);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie 1 | 1+2^-7
}

// ---------------------------------------------------------------------------------------------
// The dtype table.

TEST(DTypeTest, NamesAndSizes) {
  struct Expected {
    DType dtype;
    const char* name;
    size_t size;
  };
  const Expected table[] = {
      {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
      {DType::BF16, "BF16", 2}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I64, "I64", 8},
      {DType::I32, "I32", 4},   {DType::I16, "I16", 2},         {DType::I8, "I8", 1},
      {DType::U8, "U8", 1},     {DType::BOOL, "BOOL", 1},
  };
  for (const auto& entry : table) {
    EXPECT_EQ(dtype_size(entry.dtype), entry.size) << entry.name;
    EXPECT_EQ(dtype_name(entry.dtype), entry.name);
    EXPECT_EQ(parse_dtype(entry.name, "here"), entry.dtype);
  }
}

TEST(DTypeTest, UnknownDtypeNamesWhere) {
  try {
    parse_dtype("F8_E5M2", "model.safetensors: tensor \"w\"");
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "model.safetensors: tensor \"w\": unsupported dtype \"F8_E5M2\"");
  }
  EXPECT_THROW(parse_dtype("f32", "x"), Error);  // the spelling is case-sensitive
  EXPECT_THROW(parse_dtype("", "x"), Error);
}

}  // namespace
}  // namespace dsv3
