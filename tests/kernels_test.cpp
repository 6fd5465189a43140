// Every fast kernel against its scalar reference, on random inputs of odd sizes, for every
// weight format and every instruction set this CPU can run (forced through set_active_isa).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <initializer_list>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/attention_ops.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/machine_probe.h"
#include "kernels/matmul.h"
#include "kernels/matmul_transposed.h"
#include "kernels/head_matvec.h"
#include "kernels/ops.h"
#include "kernels/simd/isa_kernels.h"
#include "kernels/simd/quant_kernels.h"
#include "kernels/quant_matmul.h"
#include "tensor/block_quant.h"
#include "tensor/row_blocks.h"
#include "tensor/thread_pool.h"
#include "util/error.h"

namespace dsv3::kernels {
namespace {

// Restores the instruction set and thread count a test changed.
class KernelSettingsGuard {
 public:
  KernelSettingsGuard()
      : isa_(active_isa()),
        precision_(activation_precision()),
        threads_(ThreadPool::global().num_threads()),
        amx_(amx_allowed()) {}
  ~KernelSettingsGuard() {
    set_active_isa(isa_);
    set_activation_precision(precision_);
    ThreadPool::global().set_num_threads(threads_);
    set_amx_allowed(amx_);
  }

 private:
  KernelIsa isa_;
  ActivationPrecision precision_;
  int threads_;
  bool amx_;
};

// The activation precisions that give BF16 weights different kernels (others: one).
std::vector<ActivationPrecision> precisions_for(DType dtype) {
  if (dtype == DType::BF16 || dtype == DType::F8_E4M3)
    return {ActivationPrecision::kF32, ActivationPrecision::kBf16};
  return {ActivationPrecision::kF32};
}

// Calls fn(isa, dtype) under every supported kernel set, for each of `dtypes` and each
// activation precision that format takes, both set while fn runs (a KernelSettingsGuard of the
// caller's restores them).
template <class Fn>
void for_each_kernel_setting(std::span<const DType> dtypes, Fn&& fn) {
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (DType dtype : dtypes) {
      for (ActivationPrecision precision : precisions_for(dtype)) {
        set_activation_precision(precision);
        fn(isa, dtype);
      }
    }
  }
}

// A random weight matrix that owns its storage.
struct RandomWeights {
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  std::vector<uint16_t> group_scales;  // Q8 / Q4
  WeightMatrix w;
};

// Normal values quantized to Q8 / Q4 with quantize_row, rows of varied magnitude.
RandomWeights random_quant_weights(DType dtype, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  RandomWeights out;
  const int64_t row_bytes = quant_row_bytes(dtype, cols), groups = quant_groups(cols);
  out.bytes.resize(size_t(rows * row_bytes) + 1);
  out.group_scales.resize(size_t(rows * groups) + 1);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float magnitude = std::ldexp(1.0f, int(rng() % 9) - 8);
    for (auto& v : row) v = normal(rng) * magnitude;
    quantize_row(dtype, row.data(), cols, out.bytes.data() + r * row_bytes,
                 out.group_scales.data() + r * groups);
  }
  out.w.dtype = dtype;
  out.w.data = out.bytes.data();
  out.w.rows = rows;
  out.w.cols = cols;
  out.w.group_scale = out.group_scales.data();
  out.w.scale_cols = groups;
  return out;
}

RandomWeights random_weights(DType dtype, int64_t rows, int64_t cols, uint32_t seed,
                             int64_t block_rows = 128, int64_t block_cols = 128) {
  if (is_block_quantized(dtype)) return random_quant_weights(dtype, rows, cols, seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  RandomWeights out;
  out.bytes.resize(size_t(rows * cols) * dtype_size(dtype) + 1);  // +1: never empty
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float value = normal(rng);
    switch (dtype) {
      case DType::F32:
        std::memcpy(out.bytes.data() + 4 * i, &value, 4);
        break;
      case DType::BF16: {
        const uint16_t bits = f32_to_bf16(value);
        std::memcpy(out.bytes.data() + 2 * i, &bits, 2);
        break;
      }
      case DType::F16: {
        const uint16_t bits = f32_to_f16(value);
        std::memcpy(out.bytes.data() + 2 * i, &bits, 2);
        break;
      }
      case DType::F8_E4M3: {
        // Every finite code, subnormals included (0x7f and 0xff are NaN).
        uint8_t bits = uint8_t(rng());
        if ((bits & 0x7f) == 0x7f) bits ^= 0x01;
        out.bytes[size_t(i)] = bits;
        break;
      }
      default:
        break;
    }
  }
  out.w.dtype = dtype;
  out.w.data = out.bytes.data();
  out.w.rows = rows;
  out.w.cols = cols;
  if (dtype == DType::F8_E4M3) {
    const int64_t scale_rows = (rows + block_rows - 1) / block_rows;
    const int64_t scale_cols = (cols + block_cols - 1) / block_cols;
    std::uniform_real_distribution<float> scale(0.001f, 0.1f);
    out.scales.resize(size_t(scale_rows * scale_cols));
    for (auto& s : out.scales) s = scale(rng);
    out.w.block_scale = out.scales.data();
    out.w.block_rows = block_rows;
    out.w.block_cols = block_cols;
    out.w.scale_cols = scale_cols;
  }
  return out;
}

// Fast matmul vs matmul_reference; the allowed error of out[t][r] is 2e-6 of
// sum_c |x[t][c] * W[r][c]| (float accumulation vs double), which a wrong index or a lost
// block scale exceeds by orders of magnitude.
void expect_matmul_matches_reference(const WeightMatrix& w, int64_t n_tokens, uint32_t seed,
                                     const std::string& label) {
  const std::vector<float> x = random_floats(n_tokens * w.cols, seed);
  std::vector<float> fast(static_cast<size_t>(n_tokens * w.rows), NAN);
  std::vector<float> reference(static_cast<size_t>(n_tokens * w.rows));
  matmul(w, x.data(), n_tokens, fast.data());
  matmul_reference(w, x.data(), n_tokens, reference.data());

  std::vector<float> weight_row(static_cast<size_t>(w.cols));
  int failures = 0;
  for (int64_t r = 0; r < w.rows && failures < 5; ++r) {
    dequantize_row(w, r, weight_row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      double magnitude = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) {
        magnitude += std::fabs(double(x[size_t(t * w.cols + c)]) * weight_row[size_t(c)]);
      }
      const size_t index = size_t(t * w.rows + r);
      const double error = std::fabs(double(fast[index]) - double(reference[index]));
      if (!(error <= 2e-6 * magnitude + 1e-30)) {
        ADD_FAILURE() << label << ": out[" << t << "][" << r << "] = " << fast[index]
                      << ", reference " << reference[index] << " (error " << error << ", magnitude "
                      << magnitude << ")";
        ++failures;
      }
    }
  }
}

std::string describe_weights(KernelIsa isa, DType dtype, int64_t rows, int64_t cols) {
  return std::string(isa_name(isa)) + " " + std::string(dtype_name(dtype)) + " " +
         std::to_string(rows) + "x" + std::to_string(cols) + " activations " +
         std::string(activation_precision_name(activation_precision()));
}

std::string describe(KernelIsa isa, DType dtype, int64_t rows, int64_t cols, int64_t n_tokens) {
  return describe_weights(isa, dtype, rows, cols) + " n_tokens=" + std::to_string(n_tokens);
}

constexpr DType kWeightTypes[] = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3};
// With the block-quantized formats, whose products quantize the activations (compared with the
// reference by their own bound below).
constexpr DType kAllWeightTypes[] = {DType::F32,     DType::BF16, DType::F16,
                                     DType::F8_E4M3, DType::Q8,   DType::Q4};

TEST(Matmul, EveryPathMatchesReferenceAtOddSizes) {
  KernelSettingsGuard guard;
  uint32_t seed = 1;
  for_each_kernel_setting(kWeightTypes, [&](KernelIsa isa, DType dtype) {
    for (int64_t rows : {1, 3, 17, 129, 300}) {
      for (int64_t cols : {1, 7, 64, 130, 257, 1000}) {
        const RandomWeights weights = random_weights(dtype, rows, cols, ++seed);
        for (int64_t n_tokens : {1, 2, 5, 9, 33}) {
          expect_matmul_matches_reference(weights.w, n_tokens, ++seed,
                                          describe(isa, dtype, rows, cols, n_tokens));
        }
      }
    }
  });
}

// The product with `stacked` (stacked_rows(top, bottom)) is, token by token, bitwise the
// products with top and bottom side by side.
void expect_stacked_product_is_both(const WeightMatrix& stacked, const WeightMatrix& top,
                                    const WeightMatrix& bottom,
                                    std::initializer_list<int64_t> token_counts,
                                    std::string_view label) {
  for (int64_t n_tokens : token_counts) {
    const std::vector<float> x = random_floats(n_tokens * stacked.cols, 5);
    std::vector<float> both(size_t(n_tokens * stacked.rows));
    std::vector<float> upper(size_t(n_tokens * top.rows)), lower(size_t(n_tokens * bottom.rows));
    matmul(stacked, x.data(), n_tokens, both.data());
    matmul(top, x.data(), n_tokens, upper.data());
    matmul(bottom, x.data(), n_tokens, lower.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* row = both.data() + t * stacked.rows;
      EXPECT_EQ(0, std::memcmp(row, upper.data() + t * top.rows, size_t(top.rows) * 4))
          << label << " tokens=" << n_tokens << " token " << t << " upper";
      EXPECT_EQ(0, std::memcmp(row + top.rows, lower.data() + t * bottom.rows,
                               size_t(bottom.rows) * 4))
          << label << " tokens=" << n_tokens << " token " << t << " lower";
    }
  }
}

// Two matrices back to back in memory (the upper and lower rows of one), their scales too:
// stacked_rows joins them into one view whose product is, token by token, bitwise the two
// products side by side; anything else is refused.
TEST(Matmul, StackedRowsAreTheTwoProductsSideBySide) {
  KernelSettingsGuard guard;
  const int64_t top_rows = 32, bottom_rows = 48, cols = 200;
  for (DType dtype : {DType::F32, DType::BF16, DType::F8_E4M3, DType::Q8, DType::Q4}) {
    const RandomWeights whole = random_weights(dtype, top_rows + bottom_rows, cols, 77, 16, 64);
    WeightMatrix top = whole.w, bottom = whole.w;
    top.rows = top_rows;
    bottom.rows = bottom_rows;
    bottom.data = static_cast<const uint8_t*>(whole.w.data) + top_rows * whole.w.row_bytes();
    if (bottom.block_scale) bottom.block_scale += top_rows / 16 * bottom.scale_cols;
    if (bottom.group_scale) bottom.group_scale += top_rows * bottom.scale_cols;
    const WeightMatrix stacked = stacked_rows(top, bottom);
    ASSERT_FALSE(stacked.empty()) << dtype_name(dtype);
    EXPECT_EQ(stacked.rows, top_rows + bottom_rows);
    EXPECT_TRUE(stacked_rows(bottom, top).empty()) << dtype_name(dtype) << ": not back to back";
    if (dtype == DType::F8_E4M3) {  // a scale block cut in two
      WeightMatrix cut_top = top, cut_bottom = bottom;
      cut_top.rows = 24;
      cut_bottom.data = static_cast<const uint8_t*>(whole.w.data) + 24 * whole.w.row_bytes();
      EXPECT_TRUE(stacked_rows(cut_top, cut_bottom).empty());
    }
    WeightMatrix other_format = bottom;
    other_format.dtype = dtype == DType::F32 ? DType::BF16 : DType::F32;
    EXPECT_TRUE(stacked_rows(top, other_format).empty()) << dtype_name(dtype);

    expect_stacked_product_is_both(stacked, top, bottom, {1, 3, 40}, dtype_name(dtype));
  }
}

// Products reading picked rows of a larger x (MatmulItem::x_rows) give bitwise what they give
// on those rows copied together, in every format, for few tokens (streamed, the copy made by
// matmul_group) and many (the BF16 kernels read the rows in place), two products picking the
// same rows included.
TEST(Matmul, PickedRowsEqualTheirCopy) {
  KernelSettingsGuard guard;
  const int64_t rows = 40, cols = 96, batch = 70;
  const std::vector<float> x = random_floats(batch * cols, 3);
  for (DType dtype : {DType::F32, DType::BF16, DType::F8_E4M3, DType::Q8, DType::Q4}) {
    const RandomWeights a = random_weights(dtype, rows, cols, 21, 16, 32);
    const RandomWeights b = random_weights(dtype, rows, cols, 22, 16, 32);
    for (int64_t n_tokens : {1, 5, 33}) {
      std::vector<int64_t> picked(static_cast<size_t>(n_tokens));
      for (int64_t t = 0; t < n_tokens; ++t) picked[size_t(t)] = (t * 29 + 7) % batch;
      std::vector<float> copy(size_t(n_tokens * cols));
      for (int64_t t = 0; t < n_tokens; ++t)
        std::copy_n(x.data() + picked[size_t(t)] * cols, cols, copy.data() + t * cols);
      std::vector<float> expected_a(size_t(n_tokens * rows)), expected_b = expected_a;
      matmul(a.w, copy.data(), n_tokens, expected_a.data());
      matmul(b.w, copy.data(), n_tokens, expected_b.data());
      std::vector<float> out_a(expected_a.size(), -1.0f), out_b = out_a;
      MatmulItem items[] = {{&a.w, x.data(), n_tokens, out_a.data()},
                            {&b.w, x.data(), n_tokens, out_b.data()}};
      items[0].x_rows = items[1].x_rows = picked.data();
      matmul_group(items);
      const std::string label = std::string(dtype_name(dtype)) + " tokens=" + std::to_string(n_tokens);
      EXPECT_EQ(0, std::memcmp(out_a.data(), expected_a.data(), out_a.size() * sizeof(float)))
          << label;
      EXPECT_EQ(0, std::memcmp(out_b.data(), expected_b.data(), out_b.size() * sizeof(float)))
          << label;
    }
  }
}

TEST(Matmul, ManyTokensCrossPanelAndBlockBoundaries) {
  KernelSettingsGuard guard;
  uint32_t seed = 1000;
  for_each_kernel_setting(kWeightTypes, [&](KernelIsa isa, DType dtype) {
    // 530 tokens pass the GEMM's token blocks, 300 rows its row blocks, 390 columns
    // its column blocks with a partial one.
    for (int64_t n_tokens : {100, 530}) {
      const RandomWeights weights = random_weights(dtype, 300, 390, ++seed);
      expect_matmul_matches_reference(weights.w, n_tokens, ++seed,
                                      describe(isa, dtype, 300, 390, n_tokens));
    }
  });
}

TEST(Matmul, Fp8WithOtherBlockShapesAndLargeScales) {
  KernelSettingsGuard guard;
  uint32_t seed = 2000;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    // Blocks of 64 x 32 (SIMD-friendly), 3 x 100 (columns not a multiple of the lanes: the
    // reference path must take over) and one large scale (beyond the SIMD range).
    for (auto [block_rows, block_cols] : {std::pair<int64_t, int64_t>{64, 32}, {3, 100}}) {
      RandomWeights weights =
          random_weights(DType::F8_E4M3, 130, 257, ++seed, block_rows, block_cols);
      for (int64_t n_tokens : {1, 3, 20}) {
        expect_matmul_matches_reference(weights.w, n_tokens, ++seed,
                                        describe(isa, DType::F8_E4M3, 130, 257, n_tokens) +
                                            " block " + std::to_string(block_rows) + "x" +
                                            std::to_string(block_cols));
      }
    }
    RandomWeights weights = random_weights(DType::F8_E4M3, 129, 130, ++seed);
    weights.scales[1] = 1000.0f;
    expect_matmul_matches_reference(weights.w, 2, ++seed,
                                    describe(isa, DType::F8_E4M3, 129, 130, 2) + " large scale");
  }
}

// FP8 weights with bf16 activations (simd/fp8_bf16_avx512.cpp): rows long enough for the
// prefill's column chunks, crossing scale rows inside the threads' row ranges, few tokens
// (codes read in place) and many (widened panels).
TEST(Matmul, Fp8WithBf16ActivationsOnLongRows) {
  KernelSettingsGuard guard;
  set_activation_precision(ActivationPrecision::kBf16);
  uint32_t seed = 2500;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    const RandomWeights weights = random_weights(DType::F8_E4M3, 260, 2100, ++seed);
    for (int64_t n_tokens : {3, 40}) {
      expect_matmul_matches_reference(weights.w, n_tokens, ++seed,
                                      describe(isa, DType::F8_E4M3, 260, 2100, n_tokens));
    }
  }
}

TEST(Matmul, Fp8ConvertsEveryCodeExactly) {
  // One row holding each of the 254 finite codes, with scale 1: against fp8_e4m3_to_f32 via
  // one-hot inputs, so any wrong code shows up as a wrong output.
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    std::vector<uint8_t> codes;
    for (int code = 0; code < 256; ++code) {
      if ((code & 0x7f) != 0x7f) codes.push_back(uint8_t(code));
    }
    const float scale = 1.0f;
    WeightMatrix w;
    w.dtype = DType::F8_E4M3;
    w.data = codes.data();
    w.rows = int64_t(codes.size());
    w.cols = 1;
    w.block_scale = &scale;
    w.block_rows = 1 << 20;
    w.block_cols = 128;
    w.scale_cols = 1;
    const float one = 1.0f;
    std::vector<float> out(codes.size());
    matmul(w, &one, 1, out.data());
    for (size_t i = 0; i < codes.size(); ++i) {
      EXPECT_EQ(out[i], fp8_e4m3_to_f32(codes[i])) << isa_name(isa) << " code " << int(codes[i]);
    }
  }
}

TEST(Matmul, ResultsDoNotDependOnThreadCount) {
  KernelSettingsGuard guard;
  uint32_t seed = 3000;
  for_each_kernel_setting(kAllWeightTypes, [&](KernelIsa isa, DType dtype) {
    const RandomWeights weights = random_weights(dtype, 301, 257, ++seed);
    for (int64_t n_tokens : {1, 5, 33, 130}) {
      const std::vector<float> x = random_floats(n_tokens * 257, ++seed);
      std::vector<float> one_thread(static_cast<size_t>(n_tokens * 301)),
          two_threads(one_thread.size()), three_threads(one_thread.size());
      ThreadPool::global().set_num_threads(1);
      matmul(weights.w, x.data(), n_tokens, one_thread.data());
      ThreadPool::global().set_num_threads(2);
      matmul(weights.w, x.data(), n_tokens, two_threads.data());
      ThreadPool::global().set_num_threads(3);
      matmul(weights.w, x.data(), n_tokens, three_threads.data());
      const std::string label = describe(isa, dtype, 301, 257, n_tokens);
      EXPECT_EQ(0, std::memcmp(one_thread.data(), two_threads.data(), one_thread.size() * 4))
          << label;
      EXPECT_EQ(0, std::memcmp(one_thread.data(), three_threads.data(), one_thread.size() * 4))
          << label;
    }
  });
}

using MatmulFn = void (*)(const WeightMatrix&, const float*, int64_t, float*);

// Batch invariance: every row of product(w, x, n) is bitwise the row computed with n = 1, for
// batch sizes across the stream/panel switch and the register tiles, with each token placed at
// varying offsets of the batch (drawn at random from a pool of tokens).
void expect_batch_invariant(MatmulFn product, const WeightMatrix& w, uint32_t seed,
                            const std::string& label) {
  constexpr int64_t kPoolTokens = 64;
  const std::vector<float> pool = random_floats(kPoolTokens * w.cols, seed);
  std::vector<float> alone(size_t(kPoolTokens * w.rows));
  for (int64_t p = 0; p < kPoolTokens; ++p) {
    product(w, pool.data() + p * w.cols, 1, alone.data() + p * w.rows);
  }
  std::mt19937 rng(seed);
  std::vector<int64_t> batch_sizes = {2, 3, 5, 7, 8, 9, 10, 13, 48, 600};
  for (int i = 0; i < 6; ++i) batch_sizes.push_back(1 + int64_t(rng() % 600));
  for (int64_t n_tokens : batch_sizes) {
    std::vector<int64_t> picks(static_cast<size_t>(n_tokens));
    std::vector<float> x(static_cast<size_t>(n_tokens * w.cols));
    for (int64_t t = 0; t < n_tokens; ++t) {
      picks[size_t(t)] = int64_t(rng() % kPoolTokens);
      std::memcpy(x.data() + t * w.cols, pool.data() + picks[size_t(t)] * w.cols,
                  size_t(w.cols) * sizeof(float));
    }
    std::vector<float> batched(static_cast<size_t>(n_tokens * w.rows), NAN);
    product(w, x.data(), n_tokens, batched.data());
    int failures = 0;
    for (int64_t t = 0; t < n_tokens && failures < 3; ++t) {
      const float* expected = alone.data() + picks[size_t(t)] * w.rows;
      const float* actual = batched.data() + t * w.rows;
      if (std::memcmp(expected, actual, size_t(w.rows) * sizeof(float)) != 0) {
        int64_t r = 0;
        while (std::memcmp(expected + r, actual + r, sizeof(float)) == 0) ++r;
        ADD_FAILURE() << label << " n_tokens=" << n_tokens << ": token " << t << " (pool "
                      << picks[size_t(t)] << ") row " << r << " is " << actual[r]
                      << " in the batch, " << expected[r] << " alone";
        ++failures;
      }
    }
  }
}

// matvec_f32_activations_here (one token on the calling thread) gives bitwise what
// matmul_f32_activations gives, for every weight format and kernel set, inside a pool job too.
TEST(Matmul, MatvecHereIsTheFloatActivationProduct) {
  KernelSettingsGuard guard;
  uint32_t seed = 7000;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{256, 64}, {64, 256}, {37, 300}}) {
      for (DType dtype : kAllWeightTypes) {
        const RandomWeights weights = random_weights(dtype, rows, cols, ++seed, 64, 32);
        const std::vector<float> x = random_floats(cols, ++seed);
        std::vector<float> expected(size_t(rows), NAN), here(size_t(rows), NAN);
        matmul_f32_activations(weights.w, x.data(), 1, expected.data());
        ThreadPool::global().parallel_claim(1, [&](int64_t) {
          matvec_f32_activations_here(weights.w, x.data(), here.data());
        });
        EXPECT_EQ(0, std::memcmp(expected.data(), here.data(), size_t(rows) * sizeof(float)))
            << describe_weights(isa, dtype, rows, cols);
      }
    }
  }
}

TEST(Matmul, ATokenDoesNotDependOnItsBatch) {
  KernelSettingsGuard guard;
  uint32_t seed = 5000;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    // 37 x 300: partial row tiles and a partial last vector (and FP8 block); 701 x 70: several
    // panels and row tasks, columns shorter than two vectors; 37 x 2100: rows the vdpbf16ps
    // prefill takes in chunks of columns (a partial vector in the last).
    for (auto [rows, cols] :
         {std::pair<int64_t, int64_t>{37, 300}, {701, 70}, {37, 2100}}) {
      for (DType dtype : kAllWeightTypes) {
        for (ActivationPrecision precision : precisions_for(dtype)) {
          set_activation_precision(precision);
          // FP8 blocks of 64 x 32 keep the 70 columns on the SIMD path.
          const RandomWeights weights = random_weights(dtype, rows, cols, ++seed, 64, 32);
          expect_batch_invariant(&matmul, weights.w, ++seed,
                                 "matmul " + describe_weights(isa, dtype, rows, cols));
        }
      }
    }
  }
}

// The BF16 matrix of `weights` regrouped into kRowBlocks (tensor/row_blocks.h), a copy.
RandomWeights regrouped(const RandomWeights& weights) {
  RandomWeights copy = weights;
  copy.w.data = copy.bytes.data();
  regroup_into_row_blocks(copy.w, copy.bytes.data());
  return copy;
}

// matmul_rows_here (rows of a product on the calling thread, in pieces on matmul_row_step)
// gives bitwise matmul's rows, for every weight format, kernel set and activation precision, in
// a kRowBlocks matrix too, inside a pool job; a piece off the steps or too many tokens is an
// error.
TEST(Matmul, RowsHereAreMatmulsRows) {
  KernelSettingsGuard guard;
  uint32_t seed = 7500;
  for_each_kernel_setting(kAllWeightTypes, [&](KernelIsa isa, DType dtype) {
    const RandomWeights plain = random_weights(dtype, 200, 96, ++seed, 64, 32);
    std::vector<const RandomWeights*> forms = {&plain};
    RandomWeights blocks;
    if (dtype == DType::BF16 && fits_row_blocks(plain.w)) {
      blocks = regrouped(plain);
      forms.push_back(&blocks);
    }
    for (const RandomWeights* weights : forms) {
      const WeightMatrix& w = weights->w;
      const int64_t step = matmul_row_step(w);
      for (int64_t n_tokens : {1, 3}) {
        const std::vector<float> x = random_floats(n_tokens * w.cols, ++seed);
        std::vector<float> expected(size_t(n_tokens * w.rows), NAN);
        std::vector<float> here(expected.size(), NAN);
        matmul(w, x.data(), n_tokens, expected.data());
        // Pieces of one step, of three and the rest, each claimed by a pool thread.
        const int64_t pieces[] = {0, step, 4 * step, w.rows};
        ThreadPool::global().parallel_claim(3, [&](int64_t i) {
          matmul_rows_here(w, x.data(), n_tokens, pieces[i], pieces[i + 1], here.data());
        });
        EXPECT_EQ(0, std::memcmp(expected.data(), here.data(), expected.size() * 4))
            << describe_weights(isa, dtype, w.rows, w.cols) << " layout " << int(w.layout)
            << " tokens " << n_tokens;
      }
      std::vector<float> x(size_t(9 * w.cols), 0.5f), out(size_t(9 * w.rows));
      EXPECT_THROW(matmul_rows_here(w, x.data(), 1, 1, step, out.data()), Error);
      EXPECT_THROW(matmul_rows_here(w, x.data(), 1, 0, step + 1, out.data()), Error);
      EXPECT_THROW(matmul_rows_here(w, x.data(), 1, 0, w.rows + step, out.data()), Error);
      EXPECT_THROW(matmul_rows_here(w, x.data(), 9, 0, step, out.data()), Error);
    }
  });
}

// Row counts in whole blocks of 16 (one block, tiles of 2 to 4 blocks and their remainders,
// several panels and row tasks) and even column counts (one pair, partial vectors of the
// row-major kernel, rows the prefill takes in chunks of 512 pairs).
constexpr std::pair<int64_t, int64_t> kRowBlockShapes[] = {
    {16, 2}, {48, 34}, {80, 130}, {160, 1000}, {304, 64}, {32, 2050}, {720, 256}};

TEST(RowBlocks, RegroupingKeepsEveryElementAndRowsReadBack) {
  // Three whole groups of 32 rows and a last group of one block.
  const RandomWeights weights = random_weights(DType::BF16, 112, 70, 71);
  ASSERT_TRUE(fits_row_blocks(weights.w));
  const RandomWeights blocks = regrouped(weights);
  EXPECT_EQ(blocks.w.layout, WeightLayout::kRowBlocks);
  EXPECT_FALSE(fits_row_blocks(blocks.w));  // already regrouped
  EXPECT_NE(0, std::memcmp(weights.bytes.data(), blocks.bytes.data(), 112 * 70 * 2));
  for (int64_t r = 0; r < 112; ++r)
    for (int64_t c = 0; c < 70; ++c)
      ASSERT_EQ(weights.w.at(r, c), blocks.w.at(r, c)) << r << ", " << c;
  // The layout itself: a group's column pair is its blocks' vectors side by side.
  const auto* regrouped_elements = reinterpret_cast<const uint16_t*>(blocks.bytes.data());
  const auto* row_major = reinterpret_cast<const uint16_t*>(weights.bytes.data());
  EXPECT_EQ(regrouped_elements[32 * 70 + (1 * 2 + 0) * 32 + 5 * 2 + 1],
            row_major[(32 + 5) * 70 + 3]);
  EXPECT_EQ(regrouped_elements[32 * 70 + (1 * 2 + 1) * 32 + 5 * 2 + 1],
            row_major[(32 + 16 + 5) * 70 + 3]);
  EXPECT_EQ(regrouped_elements[96 * 70 + 1 * 32 + 4 * 2], row_major[(96 + 4) * 70 + 2]);
  std::vector<uint16_t> rows(9 * 70);
  copy_rows_from_row_blocks(blocks.w, 90, 9, rows.data());  // across the groups
  EXPECT_EQ(0, std::memcmp(rows.data(), weights.bytes.data() + 90 * 70 * 2, rows.size() * 2));
  // Only BF16 matrices of whole blocks and column pairs fit.
  EXPECT_FALSE(fits_row_blocks(random_weights(DType::BF16, 40, 70, 72).w));
  EXPECT_FALSE(fits_row_blocks(random_weights(DType::BF16, 48, 71, 73).w));
  EXPECT_FALSE(fits_row_blocks(random_weights(DType::F32, 48, 70, 74).w));
}

// Two regrouped matrices back to back stack when the top's rows are whole groups (the product
// is then the two side by side, bitwise); a top ending in a part group does not.
TEST(RowBlocks, StackedWhereTheTopIsWholeGroups) {
  KernelSettingsGuard guard;
  const int64_t cols = 130;
  for (const int64_t top_rows : {32, 96, 48}) {
    const int64_t bottom_rows = 80;
    const RandomWeights top_weights = random_weights(DType::BF16, top_rows, cols, 7001);
    const RandomWeights bottom_weights = random_weights(DType::BF16, bottom_rows, cols, 7002);
    std::vector<uint8_t> both(top_weights.bytes.begin(), top_weights.bytes.end());
    both.insert(both.end(), bottom_weights.bytes.begin(), bottom_weights.bytes.end());
    WeightMatrix top = top_weights.w, bottom = bottom_weights.w;
    top.data = both.data();
    bottom.data = both.data() + top_rows * cols * 2;
    regroup_into_row_blocks(top, both.data());
    regroup_into_row_blocks(bottom, both.data() + top_rows * cols * 2);
    const WeightMatrix stacked = stacked_rows(top, bottom);
    if (top_rows % kRowGroupRows != 0) {
      EXPECT_TRUE(stacked.empty()) << top_rows;
      continue;
    }
    ASSERT_FALSE(stacked.empty()) << top_rows;
    expect_stacked_product_is_both(stacked, top, bottom, {1, 3, 7, 40},
                                   "top rows " + std::to_string(top_rows));
  }
}

// body(isa) under every instruction set this CPU runs and each activation precision of BF16
// weights.
template <class Body>
void for_each_bf16_setting(Body&& body) {
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (ActivationPrecision precision : precisions_for(DType::BF16)) {
      set_activation_precision(precision);
      body(isa);
    }
  }
}

TEST(RowBlocks, ProductsMatchReferenceOnEveryPath) {
  KernelSettingsGuard guard;
  uint32_t seed = 7100;
  for_each_bf16_setting([&](KernelIsa isa) {
    for (auto [rows, cols] : kRowBlockShapes) {
      const RandomWeights weights = regrouped(random_weights(DType::BF16, rows, cols, ++seed));
      for (int64_t n_tokens : {1, 2, 3, 4, 7, 8, 9, 12, 13, 25, 40}) {
        expect_matmul_matches_reference(
            weights.w, n_tokens, ++seed,
            "row blocks " + describe(isa, DType::BF16, rows, cols, n_tokens));
      }
    }
  });
}

TEST(RowBlocks, ATokenHasTheSameBitsAloneInAnyBatchAndOnAnyThreadCount) {
  KernelSettingsGuard guard;
  uint32_t seed = 7300;
  for_each_bf16_setting([&](KernelIsa isa) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{80, 130}, {720, 256}, {32, 2050}}) {
      const RandomWeights weights = regrouped(random_weights(DType::BF16, rows, cols, ++seed));
      for (int threads : {1, 2, 3}) {
        ThreadPool::global().set_num_threads(threads);
        expect_batch_invariant(&matmul, weights.w, ++seed,
                               "row blocks " + describe_weights(isa, DType::BF16, rows, cols) +
                                   " threads " + std::to_string(threads));
      }
    }
  });
}

// Float activations read a regrouped matrix's rows back: bitwise the row-major matrix's product.
TEST(RowBlocks, FloatActivationsGiveTheBitsOfTheRowMajorMatrix) {
  KernelSettingsGuard guard;
  uint32_t seed = 7500;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (auto [rows, cols] : kRowBlockShapes) {
      const RandomWeights weights = random_weights(DType::BF16, rows, cols, ++seed);
      const RandomWeights blocks = regrouped(weights);
      for (int64_t n_tokens : {1, 5, 9, 33}) {
        const std::vector<float> x = random_floats(n_tokens * cols, ++seed);
        std::vector<float> expected(size_t(n_tokens * rows)), actual(expected.size(), NAN);
        matmul_f32_activations(weights.w, x.data(), n_tokens, expected.data());
        matmul_f32_activations(blocks.w, x.data(), n_tokens, actual.data());
        EXPECT_EQ(0, std::memcmp(expected.data(), actual.data(), expected.size() * 4))
            << describe(isa, DType::BF16, rows, cols, n_tokens);
      }
    }
  }
}

// Regrouped matrices in a group (a stacked gate and up projection, a down projection, picked
// rows) give the bits of each product alone, few tokens and many.
TEST(RowBlocks, GroupGivesTheBitsOfMatmul) {
  KernelSettingsGuard guard;
  set_activation_precision(ActivationPrecision::kBf16);
  uint32_t seed = 7700;
  const RandomWeights gate_up = regrouped(random_weights(DType::BF16, 96, 130, ++seed));
  const RandomWeights down = regrouped(random_weights(DType::BF16, 130 * 2 / 2 + 14, 48, ++seed));
  ASSERT_EQ(down.w.rows % 16, 0);
  for (int64_t n_tokens : {1, 3, 8, 9, 30}) {
    const std::vector<float> x = random_floats(2 * n_tokens * 130, ++seed);
    const std::vector<float> h = random_floats(n_tokens * 48, ++seed);
    std::vector<int64_t> picked;
    for (int64_t t = 0; t < n_tokens; ++t) picked.push_back(2 * t + 1);
    std::vector<float> a(size_t(n_tokens * 96)), b(size_t(n_tokens * down.w.rows));
    std::vector<float> a_alone(a.size()), b_alone(b.size()), rows(size_t(n_tokens * 130));
    MatmulItem items[2] = {{&gate_up.w, x.data(), n_tokens, a.data()},
                           {&down.w, h.data(), n_tokens, b.data()}};
    items[0].x_rows = picked.data();
    matmul_group(items);
    for (int64_t t = 0; t < n_tokens; ++t)
      std::memcpy(rows.data() + t * 130, x.data() + picked[size_t(t)] * 130, 130 * 4);
    matmul(gate_up.w, rows.data(), n_tokens, a_alone.data());
    matmul(down.w, h.data(), n_tokens, b_alone.data());
    EXPECT_EQ(0, std::memcmp(a.data(), a_alone.data(), a.size() * 4)) << n_tokens;
    EXPECT_EQ(0, std::memcmp(b.data(), b_alone.data(), b.size() * 4)) << n_tokens;
  }
}

// AMX (simd/amx_bf16.cpp) for BF16 weights with bf16 activations, allowed for these tests: its
// rows [0, amx_bf16_rows(w)) against the reference, the rows past them on vdpbf16ps.
bool use_amx() {
  if (!cpu_has_amx_bf16()) return false;
  set_active_isa(KernelIsa::kAvx512);
  set_activation_precision(ActivationPrecision::kBf16);
  set_amx_allowed(true);
  return amx_bf16_active();
}

TEST(Matmul, AmxMatchesReferenceAtOddSizes) {
  KernelSettingsGuard guard;
  if (!use_amx()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or not granted by the kernel)";
  uint32_t seed = 7000;
  for (int64_t rows : {1, 15, 16, 17, 47, 100, 300}) {
    for (int64_t cols : {32, 64, 96, 256, 1000, 1024}) {
      const RandomWeights weights = random_weights(DType::BF16, rows, cols, ++seed);
      EXPECT_EQ(simd::amx_bf16_rows(weights.w), cols % 32 == 0 ? rows / 16 * 16 : 0);
      for (int64_t n_tokens : {1, 2, 5, 8, 9, 15, 16, 17, 33, 40}) {
        for (int threads : {1, 2}) {
          ThreadPool::global().set_num_threads(threads);
          expect_matmul_matches_reference(
              weights.w, n_tokens, ++seed,
              "amx " + describe(KernelIsa::kAvx512, DType::BF16, rows, cols, n_tokens) +
                  " threads=" + std::to_string(threads));
        }
      }
    }
  }
}

TEST(Matmul, AmxGivesATokenTheSameBitsAloneAndInAnyBatch) {
  // TDPBF16PS computes each output from its own weight row and token only, so a token's row is
  // bitwise the same alone (the stream form, one token in a tile of 16) and in batches of 2 to
  // 40 (stream and panel forms, the token at any place of its tiles), with 1 to 3 threads.
  KernelSettingsGuard guard;
  if (!use_amx()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or not granted by the kernel)";
  uint32_t seed = 8000;
  // 300 x 256: AMX rows 0..287, vdpbf16ps 288..299; 64 x 1024: all AMX, longer dot products.
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{300, 256}, {64, 1024}}) {
    const RandomWeights weights = random_weights(DType::BF16, rows, cols, ++seed);
    constexpr int64_t kPoolTokens = 40;
    const std::vector<float> pool = random_floats(kPoolTokens * cols, ++seed);
    std::vector<float> alone(size_t(kPoolTokens * rows));
    ThreadPool::global().set_num_threads(1);
    for (int64_t p = 0; p < kPoolTokens; ++p)
      matmul(weights.w, pool.data() + p * cols, 1, alone.data() + p * rows);
    // The rows AMX computes differ from the vdpbf16ps ones (another summation order): AMX ran.
    set_amx_allowed(false);
    std::vector<float> without_amx(size_t(kPoolTokens * rows));
    matmul(weights.w, pool.data(), kPoolTokens, without_amx.data());
    EXPECT_NE(0, std::memcmp(alone.data(), without_amx.data(), alone.size() * sizeof(float)))
        << rows << "x" << cols << ": AMX gave the vdpbf16ps bits";
    set_amx_allowed(true);
    std::mt19937 rng(seed);
    for (int threads : {1, 2, 3}) {
      ThreadPool::global().set_num_threads(threads);
      for (int64_t n_tokens = 2; n_tokens <= kPoolTokens; ++n_tokens) {
        std::vector<int64_t> picks(static_cast<size_t>(n_tokens));
        std::vector<float> x(static_cast<size_t>(n_tokens * cols));
        for (int64_t t = 0; t < n_tokens; ++t) {
          picks[size_t(t)] = int64_t(rng() % kPoolTokens);
          std::memcpy(x.data() + t * cols, pool.data() + picks[size_t(t)] * cols,
                      size_t(cols) * sizeof(float));
        }
        std::vector<float> batched(size_t(n_tokens * rows), NAN);
        matmul(weights.w, x.data(), n_tokens, batched.data());
        for (int64_t t = 0; t < n_tokens; ++t) {
          ASSERT_EQ(0, std::memcmp(alone.data() + picks[size_t(t)] * rows,
                                   batched.data() + t * rows, size_t(rows) * sizeof(float)))
              << rows << "x" << cols << " threads=" << threads << " n_tokens=" << n_tokens
              << ": token " << t << " differs from its product alone";
        }
      }
    }
  }
}

TEST(Matmul, Bf16ActivationsRoundTheInputOnce) {
  // In bf16 mode a BF16-weight product multiplies x rounded to bf16: its reference is bitwise
  // the f32 reference on the pre-rounded x, the fast kernels (vdpbf16ps where the CPU has it)
  // agree with it to float accumulation error, and the result differs from the exact product
  // by at most the rounding of x (2^-9 relative per element, so 2^-8 of sum |x * w| with room).
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    uint32_t seed = 4000;
    for (auto [rows, cols, n_tokens] : {std::tuple<int64_t, int64_t, int64_t>{300, 257, 33},
                                        {17, 1000, 9},
                                        {129, 7, 100},
                                        {1, 1, 530},
                                        {130, 390, 1},
                                        {64, 600, 50},
                                        {512, 1024, 48}}) {
      const RandomWeights weights = random_weights(DType::BF16, rows, cols, ++seed);
      const std::vector<float> x = random_floats(n_tokens * cols, ++seed);
      std::vector<float> rounded(x.size());
      for (size_t i = 0; i < x.size(); ++i) rounded[i] = bf16_to_f32(f32_to_bf16(x[i]));
      const size_t n_out = size_t(n_tokens * rows);
      std::vector<float> fast(n_out), reference(n_out), reference_of_rounded(n_out), exact(n_out);
      set_activation_precision(ActivationPrecision::kBf16);
      matmul(weights.w, x.data(), n_tokens, fast.data());
      matmul_reference(weights.w, x.data(), n_tokens, reference.data());
      set_activation_precision(ActivationPrecision::kF32);
      matmul_reference(weights.w, rounded.data(), n_tokens, reference_of_rounded.data());
      matmul_reference(weights.w, x.data(), n_tokens, exact.data());
      const std::string label = describe(isa, DType::BF16, rows, cols, n_tokens);
      ASSERT_EQ(0, std::memcmp(reference.data(), reference_of_rounded.data(), n_out * 4)) << label;
      bool any_rounding_visible = false;
      std::vector<float> weight_row(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; ++r) {
        dequantize_row(weights.w, r, weight_row.data());
        for (int64_t t = 0; t < n_tokens; ++t) {
          double magnitude = 0.0;
          for (int64_t c = 0; c < cols; ++c) {
            magnitude += std::fabs(double(x[size_t(t * cols + c)]) * weight_row[size_t(c)]);
          }
          const size_t index = size_t(t * rows + r);
          ASSERT_LE(std::fabs(double(fast[index]) - reference[index]), 2e-6 * magnitude + 1e-30)
              << label << " out[" << t << "][" << r << "] against the bf16 reference";
          ASSERT_LE(std::fabs(double(fast[index]) - exact[index]), 0x1p-8 * magnitude + 1e-30)
              << label << " out[" << t << "][" << r << "] against the exact product";
          any_rounding_visible |= fast[index] != exact[index];
        }
      }
      if (cols > 1) {
        EXPECT_TRUE(any_rounding_visible) << label << ": bf16 mode gave the exact products";
      }
    }
  }
}

TEST(Matmul, F32ActivationsIgnoreTheSetting) {
  // matmul_f32_activations is matmul in f32 mode, bitwise, whatever the setting.
  KernelSettingsGuard guard;
  const RandomWeights weights = random_weights(DType::BF16, 67, 300, 77);
  for (int64_t n_tokens : {1, 7, 40}) {
    const std::vector<float> x = random_floats(n_tokens * 300, 78);
    std::vector<float> f32_mode(size_t(n_tokens * 67)), explicit_f32(f32_mode.size());
    set_activation_precision(ActivationPrecision::kF32);
    matmul(weights.w, x.data(), n_tokens, f32_mode.data());
    set_activation_precision(ActivationPrecision::kBf16);
    matmul_f32_activations(weights.w, x.data(), n_tokens, explicit_f32.data());
    EXPECT_EQ(0, std::memcmp(f32_mode.data(), explicit_f32.data(), f32_mode.size() * 4))
        << "n_tokens=" << n_tokens;
  }
}

TEST(ActivationPrecision, AutoRoundsExactlyWhereVdpbf16psRuns) {
  KernelSettingsGuard guard;
  set_activation_precision(ActivationPrecision::kAuto);
  const RandomWeights bf16 = random_weights(DType::BF16, 3, 5, 1);
  const RandomWeights f32 = random_weights(DType::F32, 3, 5, 2);
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    EXPECT_EQ(rounds_activations_to_bf16(bf16.w),
              isa == KernelIsa::kAvx512 && cpu_has_avx512_bf16())
        << isa_name(isa);
    EXPECT_FALSE(rounds_activations_to_bf16(f32.w));
  }
  set_activation_precision(ActivationPrecision::kF32);
  EXPECT_FALSE(rounds_activations_to_bf16(bf16.w));
  set_activation_precision(ActivationPrecision::kBf16);
  EXPECT_TRUE(rounds_activations_to_bf16(bf16.w));
  EXPECT_FALSE(rounds_activations_to_bf16(f32.w));
}

TEST(ActivationPrecision, NamesParseAndBadNamesAreErrors) {
  for (ActivationPrecision precision :
       {ActivationPrecision::kAuto, ActivationPrecision::kF32, ActivationPrecision::kBf16}) {
    EXPECT_EQ(parse_activation_precision(activation_precision_name(precision), "test"), precision);
  }
  EXPECT_THROW(parse_activation_precision("fp16", "--activations"), Error);
  EXPECT_THROW(parse_activation_precision("", "DSV3_ACTIVATIONS"), Error);
}

TEST(ActivationPrecision, SimdRoundingIsBitwiseTheScalarOne) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX512_BF16";
  std::vector<uint32_t> bits = {0x00000000, 0x80000000, 0x3f800000, 0x3f808000, 0x3f818000,
                                0x3f80ffff, 0x00000001, 0x00008000, 0x00018000, 0x807fffff,
                                0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000,
                                0x7f800001, 0xff800001, 0x7fffffff};
  std::mt19937 rng(9);
  while (bits.size() < 4099) bits.push_back(uint32_t(rng()));
  for (size_t n : {size_t(1), size_t(15), size_t(17), bits.size()}) {
    std::vector<float> x(n);
    std::memcpy(x.data(), bits.data(), n * 4);
    std::vector<uint16_t> simd_bits(n + 1, 0xabcd);
    simd::avx512_round_to_bf16(x.data(), int64_t(n), simd_bits.data());
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(simd_bits[i], f32_to_bf16(x[i])) << "bits 0x" << std::hex << bits[i];
    }
    EXPECT_EQ(simd_bits[n], 0xabcd) << "wrote past the end";
  }
}

// Q8 / Q4: matmul quantizes each token's activations to int16 / int8 per group of 32 columns
// (error at most half a step, max|x_g| / (2 * activation_code_max), per element), so out[t][r] may
// differ from the reference on the dequantized weights by that times sum_{c in g} |W[r][c]| summed
// over the groups, plus float rounding.
void expect_quant_matmul_within_bound(const WeightMatrix& w, int64_t n_tokens, uint32_t seed,
                                      const std::string& label) {
  const std::vector<float> x = random_floats(n_tokens * w.cols, seed);
  std::vector<float> fast(static_cast<size_t>(n_tokens * w.rows), NAN);
  std::vector<float> reference(fast.size());
  matmul(w, x.data(), n_tokens, fast.data());
  matmul_reference(w, x.data(), n_tokens, reference.data());
  std::vector<float> weight_row(static_cast<size_t>(w.cols));
  int failures = 0;
  for (int64_t r = 0; r < w.rows && failures < 5; ++r) {
    dequantize_row(w, r, weight_row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x.data() + t * w.cols;
      double bound = 0.0, magnitude = 0.0;
      for (int64_t g = 0; g * kQuantGroup < w.cols; ++g) {
        double largest = 0.0, weight_sum = 0.0;
        for (int64_t c = g * kQuantGroup; c < std::min(w.cols, (g + 1) * kQuantGroup); ++c) {
          largest = std::max(largest, std::fabs(double(xt[c])));
          weight_sum += std::fabs(double(weight_row[size_t(c)]));
          magnitude += std::fabs(double(xt[c]) * weight_row[size_t(c)]);
        }
        bound += largest / (2.0 * activation_code_max(w.dtype, w.byte_activations)) * weight_sum;
      }
      const size_t index = size_t(t * w.rows + r);
      const double error = std::fabs(double(fast[index]) - double(reference[index]));
      if (!(error <= 1.001 * bound + 1e-5 * magnitude + 1e-30)) {
        ADD_FAILURE() << label << ": out[" << t << "][" << r << "] = " << fast[index]
                      << ", reference " << reference[index] << " (error " << error << ", bound "
                      << bound << ")";
        ++failures;
      }
    }
  }
}

// The block-quantized formats with their activation codes: Q8 with int16 codes, Q8 with int8
// codes (byte_activations, as the output head), Q4 (int8 codes).
struct QuantFormat {
  DType dtype;
  bool byte_activations;
};
constexpr QuantFormat kQuantFormats[] = {{DType::Q8, false}, {DType::Q8, true}, {DType::Q4, false}};

RandomWeights random_quant_format_weights(QuantFormat format, int64_t rows, int64_t cols,
                                          uint32_t seed) {
  RandomWeights weights = random_quant_weights(format.dtype, rows, cols, seed);
  weights.w.byte_activations = format.byte_activations;
  return weights;
}

std::string describe(QuantFormat format) {
  return std::string(dtype_name(format.dtype)) + (format.byte_activations ? " (int8 codes)" : "");
}

TEST(Matmul, QuantizedFormatsMatchReferenceWithinActivationRounding) {
  KernelSettingsGuard guard;
  uint32_t seed = 7000;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (QuantFormat format : kQuantFormats) {
      for (int64_t rows : {1, 3, 17, 130}) {
        for (int64_t cols : {1, 31, 32, 33, 64, 65, 100, 127, 128, 129, 300, 1000}) {
          const RandomWeights weights = random_quant_format_weights(format, rows, cols, ++seed);
          const std::string kernel = quant_vnni_active(weights.w)   ? " (vnni)"
                                     : quant_simd_active(weights.w) ? " (simd)"
                                                                    : "";
          for (int64_t n_tokens : {1, 3, 8, 9, 20}) {
            expect_quant_matmul_within_bound(
                weights.w, n_tokens, ++seed,
                describe(isa, format.dtype, rows, cols, n_tokens) + " " + describe(format) + kernel);
          }
        }
      }
    }
  }
}

// The integer parts of the quantized products are exact, so the kernels of every instruction
// set agree up to the order of the float sums over groups.
TEST(Matmul, QuantizedKernelsAgreeAcrossInstructionSets) {
  KernelSettingsGuard guard;
  uint32_t seed = 8000;
  for (QuantFormat format : kQuantFormats) {
    for (int64_t cols : {33, 130, 1000}) {
      const RandomWeights weights = random_quant_format_weights(format, 45, cols, ++seed);
      const int64_t n_tokens = 11;
      const std::vector<float> x = random_floats(n_tokens * cols, ++seed);
      std::vector<std::vector<float>> outputs;
      for (KernelIsa isa : supported_isas()) {
        set_active_isa(isa);
        outputs.emplace_back(size_t(n_tokens * 45));
        matmul(weights.w, x.data(), n_tokens, outputs.back().data());
      }
      std::vector<float> weight_row(static_cast<size_t>(cols));
      for (int64_t r = 0; r < 45; ++r) {
        dequantize_row(weights.w, r, weight_row.data());
        for (int64_t t = 0; t < n_tokens; ++t) {
          double magnitude = 0.0;
          for (int64_t c = 0; c < cols; ++c) magnitude += std::fabs(double(x[size_t(t * cols + c)]) * weight_row[c]);
          for (size_t i = 1; i < outputs.size(); ++i) {
            EXPECT_NEAR(outputs[0][size_t(t * 45 + r)], outputs[i][size_t(t * 45 + r)], 2e-6 * magnitude)
                << describe(format) << " cols " << cols << " isa #" << i;
          }
        }
      }
    }
  }
}

// The AVX-512 activation quantization and VNNI byte layout are bitwise the scalar forms, at odd
// sizes, on values over 20 binades, groups of zeros, NaN, infinities, values near FLT_MAX or
// denormal, and values exactly half-way between two codes (round to even).
TEST(BlockQuant, SimdActivationQuantizationIsBitwiseTheScalarOne) {
  if (!isa_supported(KernelIsa::kAvx512)) GTEST_SKIP() << "no AVX-512";
  std::mt19937 rng(31);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int code_max : {kActivationCodeMax, kByteActivationCodeMax}) {
    for (int64_t cols : {1, 5, 16, 17, 31, 32, 33, 63, 64, 100, 128, 129, 300, 1000}) {
      for (int pattern = 0; pattern < 6; ++pattern) {
        std::vector<float> x(static_cast<size_t>(cols));
        for (auto& v : x) v = normal(rng) * std::ldexp(1.0f, int(rng() % 20) - 10);
        if (pattern == 1) std::fill(x.begin(), x.begin() + std::min<int64_t>(cols, 40), 0.0f);
        if (pattern == 2) x[size_t(cols / 2)] = NAN;
        if (pattern == 3) {
          x[size_t(cols - 1)] = -INFINITY;
          x[0] = cols > 1 ? 3e38f : x[0];
        }
        if (pattern == 4) {
          // Half-way values: the group's largest is code_max, so x * inverse == x.
          for (int64_t c = 0; c < cols; ++c) x[size_t(c)] = float(c % 7) - 3.5f;
          for (int64_t c = 0; c < cols; c += kQuantGroup) x[size_t(c)] = float(code_max);
        }
        if (pattern == 5) {
          for (auto& v : x) v = -0.0f;
          x[0] = 1e-40f;  // a denormal largest
        }
        const int64_t stride = (cols + kQ4ChunkCols - 1) / kQ4ChunkCols * kQ4ChunkCols;
        const int64_t groups = stride / kQuantGroup;
        std::vector<int16_t> scalar_codes(static_cast<size_t>(stride), 0),
            simd_codes(static_cast<size_t>(stride), 0);
        std::vector<float> scalar_scales(static_cast<size_t>(groups), 0.0f),
            simd_scales(static_cast<size_t>(groups), 0.0f);
        quantize_activations(x.data(), cols, code_max, scalar_codes.data(), scalar_scales.data());
        simd::avx512_quantize_activations(x.data(), cols, code_max, simd_codes.data(),
                                          simd_scales.data());
        const std::string label = "code_max " + std::to_string(code_max) + " cols " +
                                  std::to_string(cols) + " pattern " + std::to_string(pattern);
        EXPECT_EQ(scalar_codes, simd_codes) << label;
        EXPECT_EQ(0,
                  std::memcmp(scalar_scales.data(), simd_scales.data(), scalar_scales.size() * 4))
            << label;

        if (code_max != kByteActivationCodeMax) continue;  // the VNNI layout takes int8 codes
        for (int weight_offset : {8, 128}) {  // Q4, Q8
          std::vector<int8_t> scalar_bytes(static_cast<size_t>(stride)),
              simd_bytes(static_cast<size_t>(stride));
          std::vector<float> scalar_lane_scales(static_cast<size_t>(groups * 8)),
              simd_lane_scales(static_cast<size_t>(groups * 8));
          std::vector<int32_t> scalar_offsets(static_cast<size_t>(groups * 8)),
              simd_offsets(static_cast<size_t>(groups * 8));
          arrange_byte_activations(scalar_codes.data(), scalar_scales.data(), stride,
                                   weight_offset, scalar_bytes.data(),
                                   scalar_lane_scales.data(), scalar_offsets.data());
          simd::avx512_arrange_byte_activations(scalar_codes.data(), scalar_scales.data(), stride,
                                                weight_offset, simd_bytes.data(),
                                                simd_lane_scales.data(), simd_offsets.data());
          const std::string offset_label = label + " weight offset " + std::to_string(weight_offset);
          EXPECT_EQ(scalar_bytes, simd_bytes) << offset_label;
          EXPECT_EQ(scalar_offsets, simd_offsets) << offset_label;
          EXPECT_EQ(0, std::memcmp(scalar_lane_scales.data(), simd_lane_scales.data(),
                                   scalar_lane_scales.size() * 4))
              << offset_label;
        }
      }
    }
  }
}

// x times W (W applied transposed, read from its rows): every format and instruction set against
// the double reference within float rounding of the row sums, at odd sizes; several items in one
// group give each item's result alone, bitwise, whatever the thread count.
TEST(MatmulTransposed, MatchesReferenceAndGroupsAreBitwiseAlone) {
  KernelSettingsGuard guard;
  uint32_t seed = 9000;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (DType dtype : {DType::Q8, DType::Q4, DType::BF16}) {
      for (int64_t rows : {1, 3, 64, 65}) {
        for (int64_t cols : {1, 17, 31, 100, 128, 129, 256, 300}) {
          const RandomWeights weights = random_weights(dtype, rows, cols, ++seed);
          const WeightMatrix& w = weights.w;
          for (int64_t n_tokens : {1, 3}) {
            const std::vector<float> x = random_floats(n_tokens * rows, ++seed);
            std::vector<float> fast(size_t(n_tokens * cols), NAN), reference(fast.size());
            const TransposedMatmulItem item{&w, x.data(), n_tokens, fast.data()};
            matmul_transposed_group(std::span(&item, 1));
            matmul_transposed_reference(w, x.data(), n_tokens, reference.data());
            for (int64_t t = 0; t < n_tokens; ++t) {
              for (int64_t c = 0; c < cols; ++c) {
                double magnitude = 0.0;
                for (int64_t r = 0; r < rows; ++r)
                  magnitude += std::fabs(double(x[size_t(t * rows + r)]) * w.at(r, c));
                const size_t index = size_t(t * cols + c);
                ASSERT_NEAR(fast[index], reference[index], 1e-6 * rows * magnitude + 1e-30)
                    << describe(isa, dtype, rows, cols, n_tokens) << " out[" << t << "][" << c
                    << "]";
              }
            }
          }
        }
      }
    }
    // A group of differently shaped items, each bitwise what it gives alone.
    std::vector<RandomWeights> group_weights;
    std::vector<std::vector<float>> inputs, alone, grouped;
    std::vector<TransposedMatmulItem> items;
    for (int i = 0; i < 6; ++i) {
      const int64_t rows = 20 + 9 * i, cols = 50 + 70 * i, n_tokens = 1 + i % 3;
      group_weights.push_back(random_weights(i % 2 ? DType::Q4 : DType::Q8, rows, cols, ++seed));
      inputs.push_back(random_floats(n_tokens * rows, ++seed));
      alone.emplace_back(size_t(n_tokens * cols));
      grouped.emplace_back(size_t(n_tokens * cols), NAN);
    }
    for (int i = 0; i < 6; ++i) {
      const WeightMatrix& w = group_weights[size_t(i)].w;
      const int64_t n_tokens = int64_t(inputs[size_t(i)].size()) / w.rows;
      const TransposedMatmulItem item{&w, inputs[size_t(i)].data(), n_tokens,
                                      alone[size_t(i)].data()};
      ThreadPool::global().set_num_threads(1);
      matmul_transposed_group(std::span(&item, 1));
      items.push_back({&w, inputs[size_t(i)].data(), n_tokens, grouped[size_t(i)].data()});
    }
    ThreadPool::global().set_num_threads(3);
    matmul_transposed_group(items);
    for (int i = 0; i < 6; ++i)
      EXPECT_EQ(0, std::memcmp(alone[size_t(i)].data(), grouped[size_t(i)].data(),
                               alone[size_t(i)].size() * 4))
          << isa_name(isa) << " item " << i;
  }
}

TEST(BlockQuant, RowsRoundTripWithinHalfAStepAndQ4PacksColumnPairs) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (DType dtype : {DType::Q8, DType::Q4}) {
    for (int64_t cols : {1, 31, 33, 200, 256}) {
      std::vector<float> row(static_cast<size_t>(cols));
      for (auto& v : row) v = normal(rng);
      std::vector<uint8_t> codes(size_t(quant_row_bytes(dtype, cols)));
      std::vector<uint16_t> scales(size_t(quant_groups(cols)));
      quantize_row(dtype, row.data(), cols, codes.data(), scales.data());
      double error = 0.0, energy = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        const float scale = f16_to_f32(scales[size_t(c / kQuantGroup)]);
        const float value = float(quant_value(dtype, codes.data(), c)) * scale;
        if (dtype == DType::Q8) {
          EXPECT_LE(std::fabs(value - row[c]), 0.5f * scale * 1.001f) << c;
        }
        error += double(value - row[c]) * (value - row[c]);
        energy += double(row[c]) * row[c];
      }
      // 4-bit codes: the relative RMS error of normal values is about 0.1.
      EXPECT_LT(std::sqrt(error / energy), dtype == DType::Q8 ? 0.01 : 0.13) << dtype_name(dtype) << cols;
    }
  }
  // Q4: byte i of a 128-column chunk holds column i (low nibble) and column 64 + i (high).
  std::vector<float> row(256, 0.0f);
  row[5] = 1.0f;     // code 7 + 8 or -8 + 8 depending on the scale's sign: nonzero nibble
  row[64 + 7] = 1.0f;
  row[128 + 64 + 1] = -1.0f;
  std::vector<uint8_t> codes(size_t(quant_row_bytes(DType::Q4, 256)));
  std::vector<uint16_t> scales(8);
  quantize_row(DType::Q4, row.data(), 256, codes.data(), scales.data());
  EXPECT_EQ(codes.size(), 128u);
  EXPECT_NE(codes[5] & 0x0f, 8);
  EXPECT_EQ(codes[5] >> 4, 8);
  EXPECT_NE(codes[7] >> 4, 8);
  EXPECT_NE(codes[64 + 1] >> 4, 8);
  EXPECT_EQ(codes[64 + 1] & 0x0f, 8);
  EXPECT_FLOAT_EQ(float(quant_value(DType::Q4, codes.data(), 192 + 1)) * f16_to_f32(scales[6]), -1.0f);
}

TEST(Matmul, RejectsBadInput) {
  RandomWeights weights = random_weights(DType::F32, 4, 4, 1);
  std::vector<float> x(8), out(8);
  WeightMatrix w = weights.w;
  w.dtype = DType::I32;
  EXPECT_THROW(matmul(w, x.data(), 2, out.data()), Error);
  w = weights.w;
  w.data = nullptr;
  EXPECT_THROW(matmul(w, x.data(), 2, out.data()), Error);
  EXPECT_THROW(matmul(weights.w, x.data(), -1, out.data()), Error);
  RandomWeights fp8 = random_weights(DType::F8_E4M3, 4, 300, 2);
  w = fp8.w;
  w.block_scale = nullptr;
  EXPECT_THROW(matmul(w, x.data(), 1, out.data()), Error);
  w = fp8.w;
  w.scale_cols = 2;  // needs 3 for 300 columns in blocks of 128
  EXPECT_THROW(matmul(w, x.data(), 1, out.data()), Error);
  EXPECT_NO_THROW(matmul(weights.w, x.data(), 0, out.data()));
  for (DType dtype : {DType::Q8, DType::Q4}) {
    RandomWeights quant = random_weights(dtype, 4, 300, 3);
    w = quant.w;
    w.group_scale = nullptr;
    EXPECT_THROW(matmul(w, x.data(), 1, out.data()), Error);
    w = quant.w;
    w.scale_cols = 9;  // needs 10 for 300 columns in groups of 32
    EXPECT_THROW(matmul(w, x.data(), 1, out.data()), Error);
  }
}

TEST(CpuDispatch, ScalarIsAlwaysSupportedAndNamed) {
  EXPECT_TRUE(isa_supported(KernelIsa::kScalar));
  EXPECT_EQ(isa_name(KernelIsa::kAvx512), "avx512");
  KernelSettingsGuard guard;
  set_active_isa(KernelIsa::kScalar);
  EXPECT_EQ(active_isa(), KernelIsa::kScalar);
}

// ---------------------------------------------------------------------------------------------
// Row operations.

constexpr int64_t kRowSizes[] = {1, 7, 16, 17, 130, 1000, 7168};

void expect_near_relative(const std::vector<float>& fast, const std::vector<float>& reference,
                          double relative, double absolute, const std::string& label) {
  ASSERT_EQ(fast.size(), reference.size());
  for (size_t i = 0; i < fast.size(); ++i) {
    const double tolerance = relative * std::fabs(double(reference[i])) + absolute;
    ASSERT_LE(std::fabs(double(fast[i]) - double(reference[i])), tolerance)
        << label << " at " << i << ": " << fast[i] << " vs " << reference[i];
  }
}

TEST(Ops, RmsNormMatchesReference) {
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t n : kRowSizes) {
      const std::vector<float> x = random_floats(n, uint32_t(n), 3.0f);
      const std::vector<float> weight = random_floats(n, uint32_t(n + 1));
      std::vector<float> fast(static_cast<size_t>(n)), reference(static_cast<size_t>(n));
      rms_norm(x.data(), weight.data(), n, 1e-6f, fast.data());
      rms_norm_reference(x.data(), weight.data(), n, 1e-6f, reference.data());
      expect_near_relative(fast, reference, 1e-5, 1e-7,
                           std::string(isa_name(isa)) + " n=" + std::to_string(n));
      std::vector<float> in_place = x;  // out may alias x
      rms_norm(in_place.data(), weight.data(), n, 1e-6f, in_place.data());
      expect_near_relative(in_place, reference, 1e-5, 1e-7, "in place");
    }
  }
}

TEST(Ops, SiluMulMatchesReference) {
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t n : kRowSizes) {
      std::vector<float> gate = random_floats(n, uint32_t(n), 4.0f);
      if (n >= 7) gate[0] = -100.0f, gate[1] = 100.0f, gate[2] = 0.0f, gate[3] = -88.5f;
      const std::vector<float> up = random_floats(n, uint32_t(n + 1));
      std::vector<float> fast(static_cast<size_t>(n), 7.0f), reference(static_cast<size_t>(n));
      silu_mul(gate.data(), up.data(), n, fast.data());
      silu_mul_reference(gate.data(), up.data(), n, reference.data());
      expect_near_relative(fast, reference, 1e-5, 1e-30,
                           std::string(isa_name(isa)) + " n=" + std::to_string(n));
      // In place on gate: the same values.
      std::vector<float> in_place = gate;
      silu_mul(in_place.data(), up.data(), n, in_place.data());
      EXPECT_EQ(in_place, fast) << isa_name(isa) << " n=" << n;
    }
  }
}

TEST(Ops, SigmoidMatchesReference) {
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t n : kRowSizes) {
      std::vector<float> x = random_floats(n, uint32_t(n), 4.0f);
      if (n >= 7) x[0] = -100.0f, x[1] = 100.0f, x[2] = 0.0f, x[3] = -88.5f;
      std::vector<float> fast(static_cast<size_t>(n), 7.0f), reference(static_cast<size_t>(n));
      sigmoid(x.data(), n, fast.data());
      sigmoid_reference(x.data(), n, reference.data());
      expect_near_relative(fast, reference, 1e-6, 1e-30,
                           std::string(isa_name(isa)) + " n=" + std::to_string(n));
      std::vector<float> in_place = x;  // out may be x
      sigmoid(in_place.data(), n, in_place.data());
      EXPECT_EQ(in_place, fast) << isa_name(isa) << " n=" << n;
    }
  }
}

// The first index of the largest, on every kernel set, at sizes around the vector and chain
// widths, with ties, signed zeros, infinities and NaN (first, inside, everywhere but first).
TEST(Ops, ArgmaxMatchesReference) {
  KernelSettingsGuard guard;
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> small(-3, 3);
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t n : {0, 1, 2, 7, 8, 15, 16, 17, 63, 64, 65, 127, 129, 1000, 129280}) {
      for (int pattern = 0; pattern < 8; ++pattern) {
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = float(small(rng));  // many ties
        if (pattern == 1) x = random_floats(n, uint32_t(n));
        if (n > 0 && pattern == 2) x[0] = NAN;
        if (n > 2 && pattern == 3) x[size_t(n) / 2] = NAN, x[size_t(n) - 1] = NAN;
        if (pattern == 4)
          for (float& v : x) v = (rng() % 2) ? 0.0f : -0.0f;
        if (n > 1 && pattern == 5) x[size_t(n) - 1] = INFINITY;
        if (pattern == 6)
          for (float& v : x) v = -INFINITY;
        if (n > 1 && pattern == 7) {
          for (float& v : x) v = NAN;
          x[0] = -5.0f, x[size_t(n) - 1] = -4.0f;
        }
        EXPECT_EQ(argmax(x.data(), n), argmax_reference(x.data(), n))
            << isa_name(isa) << " n=" << n << " pattern " << pattern;
      }
    }
  }
}

// The per-head product of MLA's absorbed form, on every kernel set: bitwise its scalar order
// at odd shapes (rows around the 16-row blocks and the vector widths, odd column counts), a
// token alone or in any batch; and within rounding of a double sum of the unpacked matrix.
TEST(HeadMatvec, EveryKernelSetGivesTheReferenceBits) {
  KernelSettingsGuard guard;
  uint32_t seed = 9100;
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 256}, {256, 64}, {1, 1}, {7, 3},
                            {16, 2}, {17, 33}, {40, 130}, {33, 257}}) {
    std::vector<uint16_t> matrix(size_t(rows * cols));
    const std::vector<float> values = random_floats(rows * cols, ++seed);
    for (size_t i = 0; i < matrix.size(); ++i) matrix[i] = f32_to_bf16(values[i]);
    std::vector<uint16_t> packed(size_t(packed_head_elements(rows, cols)), 0xffff);
    pack_head_matrix(matrix.data(), rows, cols, cols, 1, packed.data());
    const PackedHeadMatrix w{packed.data(), rows, cols};
    constexpr int64_t kTokens = 5;
    const std::vector<float> x = random_floats(kTokens * cols, ++seed);
    std::vector<float> reference(size_t(kTokens * rows));
    head_matvec_reference(w, x.data(), kTokens, reference.data());
    for (int64_t t = 0; t < kTokens; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double sum = 0.0, magnitude = 0.0;
        for (int64_t c = 0; c < cols; ++c) {
          const double term = double(bf16_to_f32(matrix[size_t(r * cols + c)])) * x[size_t(t * cols + c)];
          sum += term;
          magnitude += std::fabs(term);
        }
        EXPECT_NEAR(reference[size_t(t * rows + r)], sum, 1e-5 * magnitude + 1e-30)
            << rows << "x" << cols << " token " << t << " row " << r;
      }
    for (KernelIsa isa : supported_isas()) {
      set_active_isa(isa);
      std::vector<float> batch(reference.size(), NAN), alone(size_t(rows), NAN);
      head_matvec(w, x.data(), kTokens, batch.data());
      EXPECT_EQ(0, std::memcmp(batch.data(), reference.data(), batch.size() * 4))
          << isa_name(isa) << " " << rows << "x" << cols;
      head_matvec(w, x.data() + 3 * cols, 1, alone.data());
      EXPECT_EQ(0, std::memcmp(alone.data(), reference.data() + 3 * rows, alone.size() * 4))
          << isa_name(isa) << " " << rows << "x" << cols << " alone";
    }
  }
}

TEST(Ops, SoftmaxMatchesReference) {
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t n : kRowSizes) {
      std::vector<float> row = random_floats(n, uint32_t(n), 5.0f);
      if (n >= 7) row[1] = -INFINITY, row[5] = -INFINITY;  // masked positions
      std::vector<float> fast = row, reference = row;
      softmax(fast.data(), n);
      softmax_reference(reference.data(), n);
      expect_near_relative(fast, reference, 1e-5, 1e-30,
                           std::string(isa_name(isa)) + " n=" + std::to_string(n));
      if (n >= 7) {
        EXPECT_EQ(fast[1], 0.0f);
      }
    }
    std::vector<float> masked(19, -INFINITY);
    softmax(masked.data(), 19);
    for (float v : masked) EXPECT_EQ(v, 0.0f);
  }
}

TEST(Ops, SoftmaxNumeratorsMatchReference) {
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t n : kRowSizes) {
      std::vector<float> row = random_floats(n, uint32_t(n + 3), 5.0f);
      if (n >= 7) row[2] = -INFINITY;  // a masked position
      std::vector<float> fast = row, reference = row;
      float fast_max = 0.0f, fast_sum = 0.0f, reference_max = 0.0f, reference_sum = 0.0f;
      softmax_numerators(fast.data(), n, &fast_max, &fast_sum);
      softmax_numerators_reference(reference.data(), n, &reference_max, &reference_sum);
      const std::string label = std::string(isa_name(isa)) + " n=" + std::to_string(n);
      EXPECT_EQ(fast_max, reference_max) << label;
      EXPECT_NEAR(fast_sum, reference_sum, 1e-5 * reference_sum) << label;
      expect_near_relative(fast, reference, 1e-5, 1e-30, label);
      // Divided by their sum, the numerators are the softmax.
      std::vector<float> softmaxed = row, divided = fast;
      softmax(softmaxed.data(), n);
      for (float& v : divided) v /= fast_sum;
      expect_near_relative(divided, softmaxed, 1e-6, 1e-30, label + " divided");
    }
    std::vector<float> masked(19, -INFINITY);
    float masked_max = 0.0f, masked_sum = 1.0f;
    softmax_numerators(masked.data(), 19, &masked_max, &masked_sum);
    EXPECT_EQ(masked_max, -INFINITY);
    EXPECT_EQ(masked_sum, 0.0f);
    for (float v : masked) EXPECT_EQ(v, 0.0f);
  }
}

TEST(Ops, DotAndAxpyMatchReference) {
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t n : kRowSizes) {
      const std::vector<float> a = random_floats(n, uint32_t(n));
      const std::vector<float> b = random_floats(n, uint32_t(n + 7));
      double magnitude = 0.0;
      for (int64_t i = 0; i < n; ++i) magnitude += std::fabs(double(a[size_t(i)]) * b[size_t(i)]);
      EXPECT_NEAR(dot(a.data(), b.data(), n), dot_reference(a.data(), b.data(), n),
                  2e-6 * magnitude)
          << isa_name(isa) << " n=" << n;
      std::vector<float> fast = b, reference = b;
      axpy(0.37f, a.data(), fast.data(), n);
      axpy_reference(0.37f, a.data(), reference.data(), n);
      expect_near_relative(fast, reference, 1e-6, 1e-6,
                           std::string(isa_name(isa)) + " axpy n=" + std::to_string(n));
    }
  }
}

// Within float rounding of the reference (the SIMD forms may fuse a product into the addition).
TEST(Ops, RotatePairsMatchesReference) {
  KernelSettingsGuard guard;
  uint32_t seed = 900;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (bool interleaved : {true, false}) {
      for (int64_t half : {1, 5, 8, 32, 33}) {
        const int64_t heads = 3, stride = 2 * half + 3;
        const std::vector<float> x = random_floats(heads * stride, ++seed);
        const std::vector<float> cos = random_floats(half, ++seed), sin = random_floats(half, ++seed);
        std::vector<float> fast = x, reference = x;
        rotate_pairs(fast.data(), heads, stride, cos.data(), sin.data(), half, interleaved);
        rotate_pairs_reference(reference.data(), heads, stride, cos.data(), sin.data(), half,
                               interleaved);
        for (int64_t h = 0; h < heads; ++h) {
          for (int64_t i = 0; i < half; ++i) {
            const int64_t first = h * stride + (interleaved ? 2 * i : i);
            const int64_t second = first + (interleaved ? 1 : half);
            // Both outputs of the pair: at most a few float roundings of |a| |c| + |b| |s|, and
            // the rotation really applied (the reference moved them).
            const float scale = std::fabs(x[size_t(first)]) * (std::fabs(cos[size_t(i)]) + std::fabs(sin[size_t(i)])) +
                                std::fabs(x[size_t(second)]) * (std::fabs(cos[size_t(i)]) + std::fabs(sin[size_t(i)]));
            for (int64_t at : {first, second})
              EXPECT_NEAR(fast[size_t(at)], reference[size_t(at)], 4e-7f * scale)
                  << isa_name(isa) << " half " << half << (interleaved ? " interleaved" : "")
                  << " head " << h << " pair " << i;
          }
        }
        EXPECT_NE(0, std::memcmp(reference.data(), x.data(), x.size() * sizeof(float)));
      }
    }
  }
}

TEST(Ops, WeightedRowSumIsBitwiseTheAxpysInOrder) {
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t n : kRowSizes) {
      for (int64_t count : {1, 2, 7}) {
        std::vector<std::vector<float>> rows;
        std::vector<const float*> pointers;
        std::vector<float> weights;
        for (int64_t k = 0; k < count; ++k) {
          rows.push_back(random_floats(n, uint32_t(n * 10 + k)));
          weights.push_back(k == count - 1 ? 1.0f : 0.1f + 0.3f * float(k));
        }
        for (const auto& row : rows) pointers.push_back(row.data());
        const std::string what = std::string(isa_name(isa)) + " n=" + std::to_string(n) +
                                 " count=" + std::to_string(count);
        std::vector<float> fast(size_t(n), 42.0f), axpys(size_t(n), 0.0f);
        std::vector<float> reference(size_t(n), 0.0f);
        weighted_row_sum(pointers.data(), weights.data(), count, n, fast.data());
        for (int64_t k = 0; k < count; ++k)
          axpy(weights[size_t(k)], pointers[size_t(k)], axpys.data(), n);
        EXPECT_EQ(0, std::memcmp(fast.data(), axpys.data(), size_t(n) * sizeof(float))) << what;
        weighted_row_sum_reference(pointers.data(), weights.data(), count, n, reference.data());
        expect_near_relative(fast, reference, 1e-6, 1e-6, what);
      }
    }
  }
}

TEST(Matmul, GroupGivesTheBitsOfMatmul) {
  // Several products of different shapes, formats and token counts (stream and panel forms,
  // float-activation items among bf16 ones, panel products split over the threads or taken
  // whole by them) in one group, for 1 to 3 threads: each out bitwise what matmul (or
  // matmul_f32_activations) alone gives.
  KernelSettingsGuard guard;
  uint32_t seed = 7000;
  struct Shape {
    DType dtype;
    int64_t rows, cols, n_tokens;
    bool float_activations;
    bool byte_activations = false;  // Q8 with int8 codes
  };
  const Shape shapes[] = {
      {DType::BF16, 37, 300, 1, false}, {DType::F32, 1, 7, 1, false},
      {DType::F8_E4M3, 129, 256, 3, false}, {DType::F16, 101, 65, 9, false},
      {DType::BF16, 48, 64, 1, true},   {DType::F32, 97, 33, 8, false},
      {DType::Q8, 67, 96, 1, false},    {DType::Q4, 70, 130, 2, false},
      {DType::Q8, 33, 64, 12, false},   {DType::BF16, 50, 70, 20, true},
      // Enough many-token products for the threads to take whole products.
      {DType::BF16, 40, 70, 9, false},  {DType::F32, 33, 50, 10, false},
      {DType::Q4, 20, 64, 11, false},   {DType::F8_E4M3, 129, 256, 9, false},
      {DType::BF16, 64, 64, 16, false}, {DType::Q8, 45, 130, 1, false, true},
      {DType::Q8, 40, 100, 10, false, true}};
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (ActivationPrecision precision : {ActivationPrecision::kAuto, ActivationPrecision::kF32}) {
      set_activation_precision(precision);
      std::vector<RandomWeights> weights;
      std::vector<std::vector<float>> inputs, expected;
      for (const Shape& shape : shapes) {
        weights.push_back(random_weights(shape.dtype, shape.rows, shape.cols, ++seed));
        weights.back().w.byte_activations = shape.byte_activations;
        inputs.push_back(random_floats(shape.n_tokens * shape.cols, ++seed));
        expected.emplace_back(size_t(shape.n_tokens * shape.rows));
        (shape.float_activations ? matmul_f32_activations : matmul)(
            weights.back().w, inputs.back().data(), shape.n_tokens, expected.back().data());
      }
      for (int threads : {1, 2, 3}) {
        ThreadPool::global().set_num_threads(threads);
        std::vector<std::vector<float>> outputs;
        std::vector<MatmulItem> items;
        for (size_t i = 0; i < weights.size(); ++i) {
          outputs.emplace_back(expected[i].size(), NAN);
          items.push_back({&weights[i].w, inputs[i].data(), shapes[i].n_tokens,
                           outputs.back().data(), shapes[i].float_activations});
        }
        matmul_group(items);
        for (size_t i = 0; i < weights.size(); ++i)
          EXPECT_EQ(0, std::memcmp(outputs[i].data(), expected[i].data(),
                                   expected[i].size() * sizeof(float)))
              << isa_name(isa) << " " << activation_precision_name(precision) << " item " << i
              << " threads " << threads;
      }
    }
  }
}

TEST(Matmul, DecodeGroupGivesTheBitsOfMatmulForAnyThreadCount) {
  // Many few-token products, as the experts of a decode step (whole matrices and pieces of one
  // row task, more tasks than threads and fewer): the threads start on their own spans of row
  // tasks and take halves of each other's spans at the end, and every out is still bitwise
  // what matmul alone gives. Repeated, so that the races between owners and thieves vary.
  KernelSettingsGuard guard;
  uint32_t seed = 9000;
  const int64_t rows[] = {512, 512, 1024, 1, 47, 48, 49, 200, 96, 3, 700, 512, 130};
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (DType dtype : {DType::BF16, DType::F32}) {
      std::vector<RandomWeights> weights;
      std::vector<std::vector<float>> inputs, expected;
      for (size_t i = 0; i < std::size(rows); ++i) {
        const int64_t cols = i % 3 == 0 ? 256 : 96, n_tokens = 1 + int64_t(i % 2);
        weights.push_back(random_weights(dtype, rows[i], cols, ++seed));
        inputs.push_back(random_floats(n_tokens * cols, ++seed));
        expected.emplace_back(size_t(n_tokens * rows[i]));
        matmul(weights.back().w, inputs.back().data(), n_tokens, expected.back().data());
      }
      for (int threads : {1, 2, 3, 4}) {
        ThreadPool::global().set_num_threads(threads);
        for (int repeat = 0; repeat < 20; ++repeat) {
          // Only the first few products on some repeats: fewer tasks than threads too.
          const size_t count = repeat % 4 == 3 ? 2 : weights.size();
          std::vector<std::vector<float>> outputs;
          std::vector<MatmulItem> items;
          for (size_t i = 0; i < count; ++i) {
            outputs.emplace_back(expected[i].size(), NAN);
            items.push_back({&weights[i].w, inputs[i].data(), int64_t(expected[i].size()) / rows[i],
                             outputs.back().data()});
          }
          matmul_group(items);
          for (size_t i = 0; i < count; ++i)
            ASSERT_EQ(0, std::memcmp(outputs[i].data(), expected[i].data(),
                                     expected[i].size() * sizeof(float)))
                << isa_name(isa) << " " << dtype_name(dtype) << " item " << i << " threads "
                << threads << " repeat " << repeat;
        }
      }
    }
  }
}

TEST(Matmul, GroupProductsOnOneInputGiveTheBitsOfMatmul) {
  // Products reading one x share its quantization in a group: formats mixed, and products on the
  // same pointer with other columns or another token count (which must not share) among them.
  KernelSettingsGuard guard;
  uint32_t seed = 7500;
  struct Shape {
    DType dtype;
    int64_t rows, cols, n_tokens;
    bool byte_activations = false;  // Q8 with int8 codes
  };
  const Shape shapes[] = {
      {DType::Q8, 40, 130, 1},       {DType::Q4, 33, 130, 1},       {DType::Q4, 70, 130, 1},
      {DType::Q8, 20, 97, 1},        {DType::Q8, 35, 130, 1, true}, {DType::Q4, 50, 65, 1},
      {DType::Q8, 40, 130, 2},       {DType::Q4, 45, 130, 2},       {DType::Q8, 29, 130, 1},
      {DType::Q8, 33, 130, 1, true}, {DType::BF16, 30, 130, 1}};
  const std::vector<float> x = random_floats(2 * 130, ++seed);
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    std::vector<RandomWeights> weights;
    std::vector<std::vector<float>> expected, outputs;
    std::vector<MatmulItem> items;
    for (const Shape& shape : shapes) {
      weights.push_back(random_weights(shape.dtype, shape.rows, shape.cols, ++seed));
      weights.back().w.byte_activations = shape.byte_activations;
      expected.emplace_back(size_t(shape.n_tokens * shape.rows));
      matmul(weights.back().w, x.data(), shape.n_tokens, expected.back().data());
    }
    for (size_t i = 0; i < weights.size(); ++i) {
      outputs.emplace_back(expected[i].size(), NAN);
      items.push_back({&weights[i].w, x.data(), shapes[i].n_tokens, outputs.back().data()});
    }
    matmul_group(items);
    for (size_t i = 0; i < weights.size(); ++i)
      EXPECT_EQ(
          0, std::memcmp(outputs[i].data(), expected[i].data(), expected[i].size() * sizeof(float)))
          << isa_name(isa) << " item " << i;
  }
}

// Many-token products on one x round its rows to bf16 once for all of them (vdpbf16ps): picked
// rows (x_rows) and leading rows, other token counts and other formats among them, and a product
// on the same pointer with fewer columns (which must not share). Each gives the bits of matmul
// alone.
TEST(Matmul, GroupPanelProductsOnOneInputGiveTheBitsOfMatmul) {
  KernelSettingsGuard guard;
  set_activation_precision(ActivationPrecision::kBf16);
  const int64_t cols = 200, batch = 60;
  const std::vector<float> x = random_floats(batch * cols, 7700);
  std::vector<int64_t> picked_a, picked_b;
  for (int64_t t = 0; t < 23; ++t) picked_a.push_back((t * 17 + 3) % batch);
  for (int64_t t = 0; t < 41; ++t) picked_b.push_back((t * 7 + 11) % batch);
  struct Shape {
    DType dtype;
    int64_t rows, cols, n_tokens;
    const std::vector<int64_t>* picked;
  };
  const Shape shapes[] = {{DType::BF16, 37, cols, 23, &picked_a},
                          {DType::BF16, 64, cols, 41, &picked_b},
                          {DType::BF16, 50, cols, batch, nullptr},
                          {DType::BF16, 21, cols, 17, nullptr},
                          {DType::F8_E4M3, 40, cols, 23, &picked_a},
                          {DType::F32, 19, cols, 30, nullptr},
                          {DType::BF16, 33, cols - 40, 25, nullptr}};
  uint32_t seed = 7710;
  std::vector<RandomWeights> weights;
  std::vector<std::vector<float>> expected, outputs;
  std::vector<MatmulItem> items;
  for (const Shape& shape : shapes) {
    weights.push_back(random_weights(shape.dtype, shape.rows, shape.cols, ++seed));
    std::vector<float> rows(size_t(shape.n_tokens * shape.cols));
    for (int64_t t = 0; t < shape.n_tokens; ++t) {
      const int64_t from = shape.picked ? (*shape.picked)[size_t(t)] : t;
      std::copy_n(x.data() + from * shape.cols, shape.cols, rows.data() + t * shape.cols);
    }
    expected.emplace_back(size_t(shape.n_tokens * shape.rows));
    matmul(weights.back().w, rows.data(), shape.n_tokens, expected.back().data());
  }
  for (size_t i = 0; i < weights.size(); ++i) {
    outputs.emplace_back(expected[i].size(), NAN);
    items.push_back({&weights[i].w, x.data(), shapes[i].n_tokens, outputs.back().data()});
    if (shapes[i].picked) items.back().x_rows = shapes[i].picked->data();
  }
  for (int threads : {1, 2, 3}) {
    ThreadPool::global().set_num_threads(threads);
    for (auto& out : outputs) std::fill(out.begin(), out.end(), NAN);
    matmul_group(items);
    for (size_t i = 0; i < weights.size(); ++i)
      EXPECT_EQ(
          0, std::memcmp(outputs[i].data(), expected[i].data(), expected[i].size() * sizeof(float)))
          << "item " << i << " threads " << threads;
  }
}

TEST(Matmul, GroupRejectsAnItemWithoutWeight) {
  float x = 0.0f, out = 0.0f;
  const MatmulItem items[] = {{nullptr, &x, 1, &out}};
  EXPECT_THROW(matmul_group(items), Error);
}

// Attention over key/value rows: the fast products against the references, at odd sizes,
// strided rows and per-query key counts.
TEST(Attention, ScoresAndWeightedSumMatchReference) {
  KernelSettingsGuard guard;
  uint32_t seed = 8000;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t dim : {1, 13, 64, 128, 320}) {
      // 33 and 70: AVX-512's tiles of two query vectors (32 queries), then the rest.
      for (int64_t n_queries : {1, 3, 8, 17, 33, 70}) {
        for (int64_t n_keys : {1, 5, 63, 64, 130, 300}) {
          const std::string label = std::string(isa_name(isa)) + " dim=" + std::to_string(dim) +
                                    " queries=" + std::to_string(n_queries) +
                                    " keys=" + std::to_string(n_keys);
          const int64_t query_stride = dim + 3, key_stride = dim + 5, scores_stride = n_keys + 2;
          const std::vector<float> queries = random_floats(n_queries * query_stride, ++seed);
          const std::vector<float> keys = random_floats(n_keys * key_stride, ++seed);
          std::vector<float> fast(size_t(n_queries * scores_stride), 0.0f), reference = fast;
          attention_scores(queries.data(), query_stride, n_queries, keys.data(), key_stride,
                           n_keys, dim, 0.125f, fast.data(), scores_stride);
          attention_scores_reference(queries.data(), query_stride, n_queries, keys.data(),
                                     key_stride, n_keys, dim, 0.125f, reference.data(),
                                     scores_stride);
          // Dot products of dim normal products: error well under 1e-5 * sqrt(dim) each.
          expect_near_relative(fast, reference, 1e-5, 1e-5 * std::sqrt(double(dim)),
                               label + " scores");

          const std::vector<float> probs = random_floats(n_queries * scores_stride, ++seed, 0.1f);
          std::vector<int64_t> counts(static_cast<size_t>(n_queries));
          for (int64_t q = 0; q < n_queries; ++q) counts[size_t(q)] = (q * 37 + 11) % (n_keys + 1);
          counts[0] = n_keys;
          const int64_t out_stride = dim + 1;
          std::vector<float> sum(size_t(n_queries * out_stride), 7.0f), sum_reference = sum;
          attention_weighted_sum(probs.data(), scores_stride, n_queries, counts.data(),
                                 keys.data(), key_stride, dim, sum.data(), out_stride);
          attention_weighted_sum_reference(probs.data(), scores_stride, n_queries, counts.data(),
                                           keys.data(), key_stride, dim, sum_reference.data(),
                                           out_stride);
          expect_near_relative(sum, sum_reference, 1e-5, 1e-5 * std::sqrt(double(n_keys)),
                               label + " weighted sum");
        }
      }
    }
  }
}

TEST(Attention, AQueryDoesNotDependOnTheOthers) {
  // Each query alone gives bitwise the scores and weighted sum it gets among 39 others (in
  // AVX-512's tiles of 32 queries and of 16, the rest).
  KernelSettingsGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    const int64_t dim = 70, n_queries = 40, n_keys = 150;
    const std::vector<float> queries = random_floats(n_queries * dim, 1);
    const std::vector<float> keys = random_floats(n_keys * dim, 2);
    std::vector<float> scores(size_t(n_queries * n_keys));
    attention_scores(queries.data(), dim, n_queries, keys.data(), dim, n_keys, dim, 0.3f,
                     scores.data(), n_keys);
    std::vector<int64_t> counts(static_cast<size_t>(n_queries));
    for (int64_t q = 0; q < n_queries; ++q) counts[size_t(q)] = n_keys - 3 * q;
    std::vector<float> sums(size_t(n_queries * dim));
    attention_weighted_sum(scores.data(), n_keys, n_queries, counts.data(), keys.data(), dim, dim,
                           sums.data(), dim);
    for (int64_t q = 0; q < n_queries; ++q) {
      std::vector<float> alone(static_cast<size_t>(n_keys)), alone_sum(static_cast<size_t>(dim));
      attention_scores(queries.data() + q * dim, dim, 1, keys.data(), dim, n_keys, dim, 0.3f,
                       alone.data(), n_keys);
      EXPECT_EQ(0, std::memcmp(alone.data(), scores.data() + q * n_keys, alone.size() * 4))
          << isa_name(isa) << " query " << q;
      attention_weighted_sum(scores.data() + q * n_keys, n_keys, 1, &counts[size_t(q)],
                             keys.data(), dim, dim, alone_sum.data(), dim);
      EXPECT_EQ(0, std::memcmp(alone_sum.data(), sums.data() + q * dim, alone_sum.size() * 4))
          << isa_name(isa) << " query " << q;
    }
  }
}

// The bandwidth probe reads its whole buffer or one slice of it (what the bench samples between
// decoded tokens); a slice it does not have is an error, not a read past the buffer.
TEST(MachineProbe, ReadsTheBufferOrOneSliceOfIt) {
  const ReadBandwidthProbe probe(int64_t(24) << 20);
  EXPECT_EQ(probe.bytes(), int64_t(24) << 20);
  EXPECT_GT(probe.measure(2), 0.0);
  for (int64_t slice = 0; slice < 5; ++slice) EXPECT_GT(probe.measure_slice(slice, 5), 0.0);
  EXPECT_THROW(probe.measure_slice(5, 5), Error);
  EXPECT_THROW(probe.measure_slice(-1, 5), Error);
  EXPECT_THROW(probe.measure_slice(0, 0), Error);
}

}  // namespace
}  // namespace dsv3::kernels
