// Throughput of the hot kernels: matrix-vector products in GB/s of weights (decode is bound by
// memory bandwidth), matrix products of 512 tokens in GFLOP/s (prefill is bound by arithmetic),
// the two attention products in GFLOP/s, RMSNorm, and STREAM-like read and triad bandwidths to
// compare the matvec figures with (BM_DecodeVsRead alternates decode's streams with a read in
// one loop, for a comparison a shared host's swings do not blur).
//
//   build-x/bench/kernels_bench [--benchmark_filter=Matvec]
//   DSV3_KERNELS=avx2 build-x/bench/kernels_bench     (force an instruction set)
//
// Every benchmark takes the thread count as its last argument (1 and 2).
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "kernels/activation_precision.h"
#include "kernels/attention_bf16.h"
#include "kernels/attention_ops.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/machine_probe.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant_matmul.h"
#include "kernels/simd/isa_kernels.h"
#include "tensor/block_quant.h"
#include "tensor/row_blocks.h"
#include "tensor/thread_pool.h"

namespace {

using dsv3::DType;
using dsv3::ThreadPool;
using dsv3::WeightMatrix;

// Matrices are cycled through so that every call reads its weights from DRAM, as in decode
// (the whole set is at least this large, well above the 32 MB L3).
constexpr size_t kColdBytes = size_t(512) << 20;

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(n);
  for (auto& v : values) v = normal(rng);
  return values;
}

// Bytes on 2 MB pages where the kernel gives them (as the model's weights, io/file_memory.h):
// 4 KB pages would add TLB misses to the cold benchmarks that the model does not have.
struct HugePageFree {
  void operator()(uint8_t* p) const { std::free(p); }
};
std::unique_ptr<uint8_t[], HugePageFree> huge_page_bytes(size_t bytes) {
  constexpr size_t kHugePage = size_t(2) << 20;
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  auto* data = static_cast<uint8_t*>(std::aligned_alloc(kHugePage, rounded));
  if (data == nullptr) throw std::bad_alloc();
  ::madvise(data, rounded, MADV_HUGEPAGE);  // before the first touch
  return std::unique_ptr<uint8_t[], HugePageFree>(data);
}

// `count` weight matrices of one shape sharing nothing, with plausible values.
struct WeightSet {
  std::vector<std::unique_ptr<uint8_t[], HugePageFree>> storage;
  std::vector<float> scales;
  std::vector<WeightMatrix> matrices;

  WeightSet(DType dtype, int64_t rows, int64_t cols, size_t count) {
    const size_t bytes = size_t(rows * cols) * dsv3::dtype_size(dtype);
    std::mt19937 rng(42);
    const int64_t scale_rows = (rows + 127) / 128, scale_cols = (cols + 127) / 128;
    scales.assign(size_t(scale_rows * scale_cols), 0.01f);
    for (size_t m = 0; m < count; ++m) {
      storage.push_back(huge_page_bytes(bytes));
      uint8_t* data = storage.back().get();
      // Random bytes are fine for BF16/F16/F32 timing except NaN/inf/subnormal patterns;
      // draw real values for those, random finite codes for FP8.
      for (size_t i = 0; i < bytes;) {
        const float value = std::normal_distribution<float>(0.0f, 0.05f)(rng);
        if (dtype == DType::F32) {
          std::memcpy(data + i, &value, 4), i += 4;
        } else if (dtype == DType::BF16 || dtype == DType::F16) {
          const uint16_t bits =
              dtype == DType::BF16 ? dsv3::f32_to_bf16(value) : dsv3::f32_to_f16(value);
          std::memcpy(data + i, &bits, 2), i += 2;
        } else {
          data[i++] = dsv3::f32_to_fp8_e4m3(value * 100.0f);
        }
        // Fill the rest of the row quickly by repeating the first 4 KB of the matrix.
        if (i == 4096) {
          for (; i + 4096 <= bytes; i += 4096) std::memcpy(data + i, data, 4096);
        }
      }
      WeightMatrix w;
      w.dtype = dtype;
      w.data = data;
      w.rows = rows;
      w.cols = cols;
      if (dtype == DType::F8_E4M3) {
        w.block_scale = scales.data();
        w.block_rows = 128;
        w.block_cols = 128;
        w.scale_cols = scale_cols;
      }
      // As a model load does (DSV3_ROW_BLOCKS=0 keeps the rows).
      if (dsv3::fits_row_blocks(w) && dsv3::kernels::row_blocks_pay())
        dsv3::regroup_into_row_blocks(w, data);
      matrices.push_back(w);
    }
  }
};

// " row blocks" for a matrix in WeightLayout::kRowBlocks (the default for BF16 products on
// vdpbf16ps; DSV3_ROW_BLOCKS=0 keeps the rows), else "".
std::string row_blocks_label(const WeightMatrix& w) {
  return w.layout == dsv3::WeightLayout::kRowBlocks ? " row blocks" : "";
}

size_t cold_count(DType dtype, int64_t rows, int64_t cols) {
  const size_t bytes = size_t(rows * cols) * dsv3::dtype_size(dtype);
  return std::max<size_t>(1, (kColdBytes + bytes - 1) / bytes);
}

// Args: rows, cols, dtype, threads. Reports weight bytes read per second.
void BM_Matvec(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const DType dtype = DType(state.range(2));
  ThreadPool::global().set_num_threads(int(state.range(3)));
  WeightSet weights(dtype, rows, cols, cold_count(dtype, rows, cols));
  const std::vector<float> x = random_floats(size_t(cols), 1);
  std::vector<float> out(static_cast<size_t>(rows));
  size_t next = 0;
  for (auto _ : state) {
    dsv3::kernels::matmul(weights.matrices[next], x.data(), 1, out.data());
    benchmark::DoNotOptimize(out.data());
    next = (next + 1) % weights.matrices.size();
  }
  const double bytes = double(rows * cols) * double(dsv3::dtype_size(dtype));
  state.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(dsv3::dtype_name(dtype)) + " " +
                 std::string(dsv3::kernels::isa_name(dsv3::kernels::active_isa())) +
                 (dsv3::kernels::rounds_activations_to_bf16(weights.matrices[0]) ? " bf16" : ""));
}

// `count` Q8 / Q4 matrices of one shape: random codes, float16 scales of plausible size.
struct QuantWeightSet {
  std::vector<std::unique_ptr<uint8_t[]>> codes;
  std::vector<std::unique_ptr<uint16_t[]>> scales;
  std::vector<WeightMatrix> matrices;
  int64_t bytes_per_matrix = 0;

  QuantWeightSet(DType dtype, int64_t rows, int64_t cols, size_t count) {
    const int64_t row_bytes = dsv3::quant_row_bytes(dtype, cols), groups = dsv3::quant_groups(cols);
    bytes_per_matrix = rows * (row_bytes + 2 * groups);
    std::mt19937 rng(7);
    for (size_t m = 0; m < count; ++m) {
      codes.emplace_back(new uint8_t[size_t(rows * row_bytes)]);
      scales.emplace_back(new uint16_t[size_t(rows * groups)]);
      for (int64_t i = 0; i < rows * row_bytes; ++i) {
        const auto byte = uint8_t(rng());
        codes.back()[size_t(i)] = dtype == DType::Q8 && byte == 0x80 ? 0x81 : byte;
      }
      for (int64_t i = 0; i < rows * groups; ++i)
        scales.back()[size_t(i)] = dsv3::f32_to_f16(0.0005f + 0.0001f * float(rng() % 16));
      WeightMatrix w;
      w.dtype = dtype;
      w.data = codes.back().get();
      w.rows = rows;
      w.cols = cols;
      w.group_scale = scales.back().get();
      w.scale_cols = groups;
      matrices.push_back(w);
    }
  }
};

// Args: rows, cols, dtype (Q8 / Q4), threads, int8 (Q8: 1 for int8 activation codes, as the
// output head, 0 for int16). Reports bytes read per second (codes and scales).
void BM_QuantMatvec(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const DType dtype = DType(state.range(2));
  ThreadPool::global().set_num_threads(int(state.range(3)));
  const int64_t bytes = rows * (dsv3::quant_row_bytes(dtype, cols) + 2 * dsv3::quant_groups(cols));
  QuantWeightSet weights(dtype, rows, cols, std::max<size_t>(1, (kColdBytes + bytes - 1) / size_t(bytes)));
  for (WeightMatrix& w : weights.matrices) w.byte_activations = state.range(4) != 0;
  const std::vector<float> x = random_floats(size_t(cols), 1);
  std::vector<float> out(static_cast<size_t>(rows));
  size_t next = 0;
  for (auto _ : state) {
    dsv3::kernels::matmul(weights.matrices[next], x.data(), 1, out.data());
    benchmark::DoNotOptimize(out.data());
    next = (next + 1) % weights.matrices.size();
  }
  state.counters["GB/s"] = benchmark::Counter(double(weights.bytes_per_matrix) * 1e-9 * double(state.iterations()),
                                              benchmark::Counter::kIsRate);
  state.SetLabel(std::string(dsv3::dtype_name(dtype)) +
                 (dsv3::kernels::quant_vnni_active(weights.matrices[0]) ? " vnni " : " ") +
                 std::string(dsv3::kernels::isa_name(dsv3::kernels::active_isa())));
}

// Args: rows, cols, dtype (Q8 / Q4), threads, n_tokens. Reports GFLOP/s (2 per multiply-add).
void BM_QuantMatmul(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const DType dtype = DType(state.range(2));
  ThreadPool::global().set_num_threads(int(state.range(3)));
  const int64_t n_tokens = state.range(4);
  QuantWeightSet weights(dtype, rows, cols, 1);
  const std::vector<float> x = random_floats(size_t(cols * n_tokens), 1);
  std::vector<float> out(static_cast<size_t>(rows * n_tokens));
  for (auto _ : state) {
    dsv3::kernels::matmul(weights.matrices[0], x.data(), n_tokens, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(rows * cols * n_tokens) * 1e-9 * double(state.iterations()),
                                                 benchmark::Counter::kIsRate);
  state.SetLabel(std::string(dsv3::dtype_name(dtype)) + " " +
                 std::string(dsv3::kernels::isa_name(dsv3::kernels::active_isa())));
}

// Args: rows, cols, dtype, threads, n_tokens. Reports GFLOP/s (2 per multiply-add).
void BM_Matmul(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const DType dtype = DType(state.range(2));
  ThreadPool::global().set_num_threads(int(state.range(3)));
  const int64_t n_tokens = state.range(4);
  WeightSet weights(dtype, rows, cols, 1);
  const std::vector<float> x = random_floats(size_t(cols * n_tokens), 1);
  std::vector<float> out(static_cast<size_t>(rows * n_tokens));
  for (auto _ : state) {
    dsv3::kernels::matmul(weights.matrices[0], x.data(), n_tokens, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 2.0 * double(rows) * double(cols) * double(n_tokens);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(dsv3::dtype_name(dtype)) + " " +
                 std::string(dsv3::kernels::isa_name(dsv3::kernels::active_isa())) +
                 (dsv3::kernels::rounds_activations_to_bf16(weights.matrices[0]) ? " bf16" : ""));
}

// BF16 weights at the bench model's prefill shapes, per activation precision (0 = f32, 1 = bf16:
// vdpbf16ps where the CPU has it). Args: rows, cols, tokens, threads, precision. GFLOP/s.
void BM_MatmulBf16(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), n_tokens = state.range(2);
  ThreadPool::global().set_num_threads(int(state.range(3)));
  const auto precision = state.range(4) == 0 ? dsv3::kernels::ActivationPrecision::kF32
                                             : dsv3::kernels::ActivationPrecision::kBf16;
  const auto previous = dsv3::kernels::activation_precision();
  dsv3::kernels::set_activation_precision(precision);
  WeightSet weights(DType::BF16, rows, cols, 1);
  const std::vector<float> x = random_floats(size_t(cols * n_tokens), 1);
  std::vector<float> out(static_cast<size_t>(rows * n_tokens));
  for (auto _ : state) {
    dsv3::kernels::matmul(weights.matrices[0], x.data(), n_tokens, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 2.0 * double(rows) * double(cols) * double(n_tokens);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(dsv3::kernels::activation_precision_name(precision)) +
                 (dsv3::kernels::rounds_activations_to_bf16(weights.matrices[0]) &&
                          dsv3::kernels::cpu_has_avx512_bf16()
                      ? (dsv3::kernels::amx_bf16_active() ? " amx (DSV3_AMX=1)" : " vdpbf16ps")
                      : "") +
                 row_blocks_label(weights.matrices[0]));
  dsv3::kernels::set_activation_precision(previous);
}

// Decode: one token (and a few) times BF16 weights read from DRAM, per activation precision.
// Args: rows, cols, tokens, threads, precision. GB/s of weights (compare with BM_StreamRead).
void BM_MatvecBf16(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), n_tokens = state.range(2);
  ThreadPool::global().set_num_threads(int(state.range(3)));
  const auto precision = state.range(4) == 0 ? dsv3::kernels::ActivationPrecision::kF32
                                             : dsv3::kernels::ActivationPrecision::kBf16;
  const auto previous = dsv3::kernels::activation_precision();
  dsv3::kernels::set_activation_precision(precision);
  WeightSet weights(DType::BF16, rows, cols, cold_count(DType::BF16, rows, cols));
  const std::vector<float> x = random_floats(size_t(cols * n_tokens), 1);
  std::vector<float> out(static_cast<size_t>(rows * n_tokens));
  size_t next = 0;
  for (auto _ : state) {
    dsv3::kernels::matmul(weights.matrices[next], x.data(), n_tokens, out.data());
    benchmark::DoNotOptimize(out.data());
    next = (next + 1) % weights.matrices.size();
  }
  const double bytes = double(rows * cols) * 2.0;
  state.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(dsv3::kernels::activation_precision_name(precision)) +
                 (dsv3::kernels::simd::amx_bf16_rows(weights.matrices[0]) > 0 ? " amx" : "") +
                 row_blocks_label(weights.matrices[0]));
  dsv3::kernels::set_activation_precision(previous);
}

// Prefill of one MoE layer's routed experts: `experts` distinct BF16 [rows][cols] matrices
// (64 of the bench shape are 64 MB, past the L3, so their weights come from DRAM as in the
// model), each times its own `tokens` rows of activations, all in one matmul_group (the form
// moe_forward uses). Args: experts, rows, cols, tokens per expert, threads. GFLOP/s.
void BM_ExpertGroupBf16(benchmark::State& state) {
  const int64_t experts = state.range(0), rows = state.range(1), cols = state.range(2);
  const int64_t n_tokens = state.range(3);
  ThreadPool::global().set_num_threads(int(state.range(4)));
  WeightSet weights(DType::BF16, rows, cols, size_t(experts));
  const std::vector<float> x = random_floats(size_t(cols * n_tokens * experts), 1);
  std::vector<float> out(static_cast<size_t>(rows * n_tokens * experts));
  std::vector<dsv3::kernels::MatmulItem> items;
  for (int64_t e = 0; e < experts; ++e)
    items.push_back({&weights.matrices[size_t(e)], x.data() + e * n_tokens * cols, n_tokens,
                     out.data() + e * n_tokens * rows});
  for (auto _ : state) {
    dsv3::kernels::matmul_group(items);
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 2.0 * double(rows * cols) * double(n_tokens * experts);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

// One MoE layer's stacked gate and up projections in a 512-token prefill of the bench model:
// 64 routed experts [1024 x 1024] with the token counts one layer of it routed (8 to 99 tokens,
// 3072 in all), each reading its rows of x in place (MatmulItem::x_rows), and the shared
// expert over all 512 tokens. Args: threads. GFLOP/s.
void BM_MoeGateUpBf16(benchmark::State& state) {
  static constexpr int64_t kCounts[] = {
      59, 55, 47, 36, 36, 31, 30, 58, 41, 82, 33, 38, 44, 55, 50, 64, 49, 45, 72, 27, 32, 28,
      34, 30, 44, 45, 47, 69, 65, 99, 61, 97, 26, 21, 83, 58, 59, 57, 47, 73, 60, 38, 36, 57,
      57, 36, 69, 41, 65, 39, 49, 62, 37, 42, 43, 43, 26, 28, 17, 64, 26, 46, 34, 30};
  constexpr int64_t kExperts = 64, kRows = 1024, kCols = 1024, kTokens = 512;
  ThreadPool::global().set_num_threads(int(state.range(0)));
  // Four layers' weights in turn (520 MB), so that none is still in L3 from the last pass.
  constexpr int64_t kLayers = 4;
  WeightSet weights(DType::BF16, kRows, kCols, size_t(kLayers * (kExperts + 1)));
  const std::vector<float> x = random_floats(size_t(kCols * kTokens), 1);
  int64_t routed = 0;
  for (const int64_t count : kCounts) routed += count;
  std::vector<int64_t> token_rows(static_cast<size_t>(routed));
  for (size_t i = 0; i < token_rows.size(); ++i) token_rows[i] = int64_t(i * 7 % kTokens);
  std::vector<float> out(static_cast<size_t>((routed + kTokens) * kRows));
  std::vector<std::vector<dsv3::kernels::MatmulItem>> layers(kLayers);
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    const WeightMatrix* matrices = weights.matrices.data() + layer * (kExperts + 1);
    int64_t first = 0;
    for (int64_t e = 0; e < kExperts; ++e) {
      dsv3::kernels::MatmulItem item{&matrices[e], x.data(), kCounts[e], out.data() + first * kRows};
      item.x_rows = token_rows.data() + first;
      layers[size_t(layer)].push_back(item);
      first += kCounts[e];
    }
    layers[size_t(layer)].push_back(
        {&matrices[kExperts], x.data(), kTokens, out.data() + routed * kRows});
  }
  int64_t layer = 0;
  for (auto _ : state) {
    dsv3::kernels::matmul_group(layers[size_t(layer)]);
    layer = (layer + 1) % kLayers;
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 2.0 * double(kRows * kCols) * double(routed + kTokens);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

// One MoE layer of a bench-shape decode step: the stacked gate and up products ([1024 x 1024])
// of 6 routed experts and the shared one in one group, then their down products ([1024 x 512])
// in another, the weights cold (another layer's each time: 40 layers, 880 MB). Args: threads.
// GB/s of weights (compare with BM_StreamRead).
void BM_DecodeMoeBf16(benchmark::State& state) {
  constexpr int64_t kExperts = 7, kHidden = 1024, kIntermediate = 512, kLayers = 40;
  ThreadPool::global().set_num_threads(int(state.range(0)));
  WeightSet gate_up(DType::BF16, 2 * kIntermediate, kHidden, size_t(kLayers * kExperts));
  WeightSet down(DType::BF16, kHidden, kIntermediate, size_t(kLayers * kExperts));
  const std::vector<float> x = random_floats(size_t(kHidden), 1);
  const std::vector<float> activated = random_floats(size_t(kExperts * kIntermediate), 2);
  std::vector<float> gate_up_out(size_t(kExperts * 2 * kIntermediate));
  std::vector<float> down_out(size_t(kExperts * kHidden));
  std::vector<dsv3::kernels::MatmulItem> gate_up_items, down_items;
  int64_t layer = 0;
  for (auto _ : state) {
    gate_up_items.clear();
    down_items.clear();
    for (int64_t e = 0; e < kExperts; ++e) {
      const size_t m = size_t(layer * kExperts + e);
      gate_up_items.push_back(
          {&gate_up.matrices[m], x.data(), 1, gate_up_out.data() + e * 2 * kIntermediate});
      down_items.push_back({&down.matrices[m], activated.data() + e * kIntermediate, 1,
                            down_out.data() + e * kHidden});
    }
    dsv3::kernels::matmul_group(gate_up_items);
    dsv3::kernels::matmul_group(down_items);
    benchmark::DoNotOptimize(down_out.data());
    layer = (layer + 1) % kLayers;
  }
  const double bytes = double(kExperts) * 3.0 * double(kIntermediate * kHidden) * 2.0;
  state.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(row_blocks_label(gate_up.matrices[0]));
}

// Decode's weight streams against a plain read of as many bytes, the two alternated in one loop
// (args: kind, threads): on a shared host the bandwidth swings from second to second, and
// benchmarks run one after the other compare different moments. "vs_read" is the products' GB/s
// over the read's (a 256 MB slice of ReadBandwidthProbe's buffer each time), both summed over
// the iterations. Kinds: 0 an lm_head (129280 x 1024), 1 four decode steps' experts (7 + 7
// products each), 2 sixteen layers' attention projections (q_a with kv_a, q_b, o_proj).
void BM_DecodeVsRead(benchmark::State& state) {
  using Clock = std::chrono::steady_clock;
  constexpr int64_t kHidden = 1024, kLayers = 40, kExperts = 7;
  const int64_t kind = state.range(0);
  ThreadPool::global().set_num_threads(int(state.range(1)));
  const dsv3::kernels::ReadBandwidthProbe probe(int64_t(512) << 20);
  std::vector<WeightSet> sets;
  if (kind == 0) {
    sets.emplace_back(DType::BF16, 129280, kHidden, 1);
  } else if (kind == 1) {
    sets.emplace_back(DType::BF16, 1024, kHidden, size_t(kLayers * kExperts));  // gate and up
    sets.emplace_back(DType::BF16, kHidden, 512, size_t(kLayers * kExperts));   // down
  } else {
    for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{384, kHidden}, {320, kHidden},
                                     {2048, 384}, {kHidden, kHidden}})
      sets.emplace_back(DType::BF16, rows, cols, size_t(kLayers));
  }
  const std::vector<float> x = random_floats(size_t(4 * kHidden), 1);
  std::vector<float> out(size_t(129280));
  std::vector<dsv3::kernels::MatmulItem> items;
  int64_t layer = 0;
  double product_seconds = 0, read_seconds = 0, product_bytes = 0, read_bytes = 0;
  auto run_products = [&] {
    // One pass of the pool over the matrices, each on the same token.
    auto group = [&](std::span<const WeightMatrix* const> matrices) {
      items.clear();
      int64_t offset = 0;
      for (const WeightMatrix* w : matrices) {
        items.push_back({w, x.data(), 1, out.data() + offset});
        offset += w->rows;
        product_bytes += double(w->rows * w->cols) * 2.0;
      }
      dsv3::kernels::matmul_group(items);
    };
    auto matrix = [&](size_t set, int64_t index) { return &sets[set].matrices[size_t(index)]; };
    if (kind == 0) {
      const WeightMatrix* lm_head[] = {matrix(0, 0)};
      return group(lm_head);
    }
    for (int step = 0; step < (kind == 1 ? 4 : 16); ++step, layer = (layer + 1) % kLayers) {
      if (kind == 2) {
        const WeightMatrix* q_a_kv_a[] = {matrix(0, layer), matrix(1, layer)};
        const WeightMatrix* q_b[] = {matrix(2, layer)};
        const WeightMatrix* o_proj[] = {matrix(3, layer)};
        group(q_a_kv_a);
        group(q_b);
        group(o_proj);
        continue;
      }
      for (size_t part = 0; part < 2; ++part) {  // gate and up, then down
        const WeightMatrix* experts[kExperts];
        for (int64_t e = 0; e < kExperts; ++e) experts[e] = matrix(part, layer * kExperts + e);
        group(experts);
      }
    }
  };
  int64_t slice = 0;
  for (auto _ : state) {
    auto start = Clock::now();
    run_products();
    product_seconds += std::chrono::duration<double>(Clock::now() - start).count();
    benchmark::DoNotOptimize(out.data());
    const double gb_s = probe.measure_slice(slice, 2);
    slice = (slice + 1) % 2;
    read_bytes += double(probe.bytes()) / 2.0;
    read_seconds += double(probe.bytes()) / 2.0 / (gb_s * 1e9);
  }
  state.counters["GB/s"] = product_bytes / product_seconds * 1e-9;
  state.counters["read_GB/s"] = read_bytes / read_seconds * 1e-9;
  state.counters["vs_read"] = (product_bytes / product_seconds) / (read_bytes / read_seconds);
  state.SetLabel(kind == 0 ? "lm_head" : kind == 1 ? "experts" : "attention projections");
}

// Args: n, threads (rows of a [64][n] activation block normalised in parallel, as in prefill).
void BM_RmsNorm(benchmark::State& state) {
  const int64_t n = state.range(0);
  ThreadPool::global().set_num_threads(int(state.range(1)));
  constexpr int64_t kRows = 64;
  const std::vector<float> x = random_floats(size_t(n * kRows), 1);
  const std::vector<float> weight = random_floats(size_t(n), 2);
  std::vector<float> out(static_cast<size_t>(n * kRows));
  for (auto _ : state) {
    ThreadPool::global().parallel_for(kRows, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        dsv3::kernels::rms_norm(x.data() + r * n, weight.data(), n, 1e-6f, out.data() + r * n);
      }
    });
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GB/s"] = benchmark::Counter(
      double(3 * n * kRows * 4) * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

// The attention products (kernels/attention_ops.h) of `calls` independent problems spread over
// the pool: `queries` queries against `keys` rows of `dim` floats. Prefill's expanded form is
// 16 calls (heads) of 32 queries (a block) and dim 128 (scores) or 64 (values); decode's
// absorbed form one call of 16 queries (the heads) over the latent cache, dim 320 (scores:
// latent and rope) or 256 (values: latent). Args: calls, queries, keys, dim, threads. GFLOP/s.
struct AttentionProblem {
  int64_t calls, queries, keys, dim;
  std::vector<float> q, rows, out;
  explicit AttentionProblem(const benchmark::State& state)
      : calls(state.range(0)), queries(state.range(1)), keys(state.range(2)), dim(state.range(3)),
        q(random_floats(size_t(calls * queries * std::max(dim, keys)), 1)),
        rows(random_floats(size_t(calls * keys * dim), 2)),
        out(size_t(calls * queries * std::max(dim, keys))) {
    ThreadPool::global().set_num_threads(int(state.range(4)));
  }
  void count(benchmark::State& state) const {
    const double flops = 2.0 * double(calls * queries * keys * dim);
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
  }
};

void BM_AttentionScores(benchmark::State& state) {
  AttentionProblem p(state);
  for (auto _ : state) {
    ThreadPool::global().parallel_for(p.calls, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        dsv3::kernels::attention_scores(p.q.data() + c * p.queries * p.dim, p.dim, p.queries,
                                        p.rows.data() + c * p.keys * p.dim, p.dim, p.keys, p.dim,
                                        0.125f, p.out.data() + c * p.queries * p.keys, p.keys);
    });
    benchmark::DoNotOptimize(p.out.data());
  }
  p.count(state);
}

void BM_AttentionWeightedSum(benchmark::State& state) {
  AttentionProblem p(state);
  for (float& v : p.q) v = 1.0f / float(p.keys);  // probabilities
  const std::vector<int64_t> key_counts(size_t(p.queries), p.keys);
  for (auto _ : state) {
    ThreadPool::global().parallel_for(p.calls, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        dsv3::kernels::attention_weighted_sum(p.q.data() + c * p.queries * p.keys, p.keys,
                                              p.queries, key_counts.data(),
                                              p.rows.data() + c * p.keys * p.dim, p.dim, p.dim,
                                              p.out.data() + c * p.queries * p.dim, p.dim);
    });
    benchmark::DoNotOptimize(p.out.data());
  }
  p.count(state);
}

// The bf16 forms (kernels/attention_bf16.h) on the same problems: keys and values packed, the
// queries and probabilities bf16 rows, as the expanded attention of a prefill under bf16
// activations runs them. GFLOP/s.
struct AttentionBf16Problem : AttentionProblem {
  std::vector<uint16_t> q_bf16, packed;
  explicit AttentionBf16Problem(const benchmark::State& state, bool values)
      : AttentionProblem(state) {
    const int64_t q_cols = values ? keys : dim, stride = (q_cols + 1) / 2 * 2;
    if (values)
      for (float& v : q) v = 1.0f / float(keys);  // probabilities
    q_bf16.resize(size_t(calls * queries * stride));
    dsv3::kernels::round_rows_to_bf16(q.data(), q_cols, calls * queries, q_cols, q_bf16.data(),
                                      stride);
    const int64_t per_call = values ? dsv3::kernels::packed_values_elements(keys, dim)
                                    : dsv3::kernels::packed_keys_elements(keys, dim);
    packed.resize(size_t(calls * per_call));
    for (int64_t c = 0; c < calls; ++c) {
      const float* rows_c = rows.data() + c * keys * dim;
      if (values) {
        dsv3::kernels::pack_values_bf16(rows_c, dim, keys, dim, packed.data() + c * per_call);
      } else {
        dsv3::kernels::pack_keys_bf16(rows_c, dim, dim, rows_c, dim, keys, dim,
                                      packed.data() + c * per_call);
      }
    }
  }
};

void BM_AttentionScoresBf16(benchmark::State& state) {
  AttentionBf16Problem p(state, false);
  const int64_t stride = (p.dim + 1) / 2 * 2;
  const int64_t per_call = dsv3::kernels::packed_keys_elements(p.keys, p.dim);
  for (auto _ : state) {
    ThreadPool::global().parallel_for(p.calls, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        dsv3::kernels::attention_scores_bf16(p.q_bf16.data() + c * p.queries * stride, stride,
                                             p.queries, p.packed.data() + c * per_call, p.keys,
                                             p.dim, 0.125f,
                                             p.out.data() + c * p.queries * p.keys, p.keys);
    });
    benchmark::DoNotOptimize(p.out.data());
  }
  p.count(state);
}

void BM_AttentionWeightedSumBf16(benchmark::State& state) {
  AttentionBf16Problem p(state, true);
  const int64_t stride = (p.keys + 1) / 2 * 2;
  const int64_t per_call = dsv3::kernels::packed_values_elements(p.keys, p.dim);
  const std::vector<int64_t> key_counts(size_t(p.queries), p.keys);
  for (auto _ : state) {
    ThreadPool::global().parallel_for(p.calls, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        dsv3::kernels::attention_weighted_sum_bf16(
            p.q_bf16.data() + c * p.queries * stride, stride, p.queries, key_counts.data(),
            p.packed.data() + c * per_call, p.dim, p.out.data() + c * p.queries * p.dim, p.dim);
    });
    benchmark::DoNotOptimize(p.out.data());
  }
  p.count(state);
}

// STREAM-like bandwidth over arrays far larger than the caches, split over the pool's threads.
// Read: the sum of a * b (what a matvec does to memory). Triad-like: y += s * x (2 reads and a
// write per element; STREAM counts 3 x 4 bytes, write-allocate traffic aside).
constexpr size_t kStreamFloats = size_t(64) << 20;  // 256 MB per array

void BM_StreamRead(benchmark::State& state) {
  ThreadPool::global().set_num_threads(int(state.range(0)));
  std::vector<float> a(kStreamFloats, 1.0f), b(kStreamFloats, 2.0f);
  std::vector<float> partial(64);
  for (auto _ : state) {
    ThreadPool::global().parallel_for(64, [&](int64_t begin, int64_t end) {
      for (int64_t part = begin; part < end; ++part) {
        const size_t offset = size_t(part) * (kStreamFloats / 64);
        partial[size_t(part)] =
            dsv3::kernels::dot(a.data() + offset, b.data() + offset, int64_t(kStreamFloats / 64));
      }
    });
    benchmark::DoNotOptimize(partial.data());
  }
  state.counters["GB/s"] =
      benchmark::Counter(double(2 * kStreamFloats * 4) * 1e-9 * double(state.iterations()),
                         benchmark::Counter::kIsRate);
}

void BM_StreamTriad(benchmark::State& state) {
  ThreadPool::global().set_num_threads(int(state.range(0)));
  std::vector<float> x(kStreamFloats, 1.0f), y(kStreamFloats, 2.0f);
  for (auto _ : state) {
    ThreadPool::global().parallel_for(64, [&](int64_t begin, int64_t end) {
      for (int64_t part = begin; part < end; ++part) {
        const size_t offset = size_t(part) * (kStreamFloats / 64);
        dsv3::kernels::axpy(1e-9f, x.data() + offset, y.data() + offset,
                            int64_t(kStreamFloats / 64));
      }
    });
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GB/s"] =
      benchmark::Counter(double(3 * kStreamFloats * 4) * 1e-9 * double(state.iterations()),
                         benchmark::Counter::kIsRate);
}

// The cost of one parallel_for with no work: the wake-up and join latency every matrix pays.
void BM_ParallelForOverhead(benchmark::State& state) {
  ThreadPool::global().set_num_threads(int(state.range(0)));
  std::vector<int64_t> touched(64);
  for (auto _ : state) {
    ThreadPool::global().parallel_for(64, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) touched[size_t(i)] += 1;
    });
  }
  benchmark::DoNotOptimize(touched.data());
}

constexpr int64_t kF32 = int64_t(DType::F32), kBF16 = int64_t(DType::BF16),
                  kF16 = int64_t(DType::F16), kFP8 = int64_t(DType::F8_E4M3);

BENCHMARK(BM_ParallelForOverhead)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_StreamRead)->Arg(1)->Arg(2)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_StreamTriad)->Arg(1)->Arg(2)->UseRealTime()->MinTime(1.0);

// The bench model's MLP (2816 x 1024, 1024 x 2816) and lm_head (129280 x 1024).
BENCHMARK(BM_Matvec)
    ->ArgNames({"rows", "cols", "dtype", "threads"})
    ->ArgsProduct({{2816}, {1024}, {kBF16, kF32, kF16, kFP8}, {1, 2}})
    ->ArgsProduct({{1024}, {2816}, {kBF16, kFP8}, {1, 2}})
    ->ArgsProduct({{129280}, {1024}, {kBF16, kF32, kFP8}, {1, 2}})
    // A DeepSeek-V3 expert's stacked gate and up projections (FP8 as released).
    ->ArgsProduct({{4096}, {7168}, {kFP8, kBF16}, {1, 2}})
    ->UseRealTime();

constexpr int64_t kQ8 = int64_t(DType::Q8), kQ4 = int64_t(DType::Q4);
BENCHMARK(BM_QuantMatvec)
    ->ArgNames({"rows", "cols", "dtype", "threads", "int8"})
    ->ArgsProduct({{2816}, {1024}, {kQ8, kQ4}, {1, 2}, {0}})
    ->ArgsProduct({{1024}, {2816}, {kQ8, kQ4}, {1, 2}, {0}})
    ->ArgsProduct({{129280}, {1024}, {kQ8, kQ4}, {1, 2}, {0}})
    ->ArgsProduct({{2816, 129280}, {1024}, {kQ8}, {1, 2}, {1}})
    ->UseRealTime();
BENCHMARK(BM_QuantMatmul)
    ->ArgNames({"rows", "cols", "dtype", "threads", "tokens"})
    ->ArgsProduct({{2816}, {1024}, {kQ8, kQ4}, {1, 2}, {512}})
    ->ArgsProduct({{2816}, {1024}, {kQ8, kQ4}, {2}, {1, 8, 64}})
    ->UseRealTime();

BENCHMARK(BM_Matmul)
    ->ArgNames({"rows", "cols", "dtype", "threads", "tokens"})
    ->ArgsProduct({{2816}, {1024}, {kBF16, kF32, kFP8}, {1, 2}, {512}})
    ->ArgsProduct({{2816}, {1024}, {kBF16}, {2}, {1, 2, 4, 8, 16, 32, 64}})
    ->ArgsProduct({{512}, {1024}, {kBF16, kF32, kFP8}, {1}, {1}})
    // A bench-shape expert's gate and up, and a DeepSeek-V3 one's, with a routed share of 512.
    ->ArgsProduct({{1024}, {1024}, {kBF16, kFP8}, {2}, {48}})
    ->ArgsProduct({{4096}, {7168}, {kBF16, kFP8}, {2}, {48}})
    ->UseRealTime();

// The bench model's prefill products (512 tokens; a routed expert sees ~48 of them): q_a, q_b,
// kv_a, kv_b, o_proj, the dense MLP, an expert's gate/up and down.
BENCHMARK(BM_MatmulBf16)
    ->ArgNames({"rows", "cols", "tokens", "threads", "bf16"})
    ->ArgsProduct({{2816}, {1024}, {512}, {1, 2}, {0, 1}})
    ->ArgsProduct({{1024}, {2816}, {512}, {2}, {1}})
    ->ArgsProduct({{384}, {1024}, {512}, {2}, {1}})
    ->ArgsProduct({{2048}, {384}, {512}, {2}, {1}})
    ->ArgsProduct({{320}, {1024}, {512}, {2}, {1}})
    ->ArgsProduct({{2048}, {256}, {512}, {2}, {0, 1}})
    ->ArgsProduct({{1024}, {1024}, {512}, {2}, {1}})
    ->ArgsProduct({{512}, {1024}, {48, 512}, {2}, {0, 1}})
    ->ArgsProduct({{1024}, {512}, {48, 512}, {2}, {1}})
    ->ArgsProduct({{2048}, {7168}, {48, 512}, {1, 2}, {1}})
    ->ArgsProduct({{96}, {1024}, {48}, {1}, {1}})
    ->UseRealTime();

BENCHMARK(BM_MatvecBf16)
    ->ArgNames({"rows", "cols", "tokens", "threads", "bf16"})
    ->ArgsProduct({{2816}, {1024}, {1, 4, 8}, {1, 2}, {0, 1}})
    ->ArgsProduct({{129280}, {1024}, {1}, {1, 2}, {0, 1}})
    ->UseRealTime();

BENCHMARK(BM_ExpertGroupBf16)
    ->ArgNames({"experts", "rows", "cols", "tokens", "threads"})
    ->ArgsProduct({{128}, {512}, {1024}, {48}, {2}})
    ->ArgsProduct({{64}, {1024}, {512}, {48}, {2}})
    ->ArgsProduct({{64}, {1024}, {1024}, {48}, {1, 2}})
    ->ArgsProduct({{2}, {512}, {1024}, {48}, {2}})
    ->ArgsProduct({{2, 128}, {512}, {1024}, {48}, {1}})
    ->UseRealTime();

BENCHMARK(BM_MoeGateUpBf16)->ArgNames({"threads"})->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_DecodeMoeBf16)->ArgNames({"threads"})->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_DecodeVsRead)
    ->ArgNames({"kind", "threads"})
    ->ArgsProduct({{0, 1, 2}, {2}})
    ->UseRealTime();

BENCHMARK(BM_AttentionScores)
    ->ArgNames({"calls", "queries", "keys", "dim", "threads"})
    ->ArgsProduct({{16}, {32}, {512}, {128}, {1, 2}})
    ->ArgsProduct({{1}, {16}, {512, 4096}, {320}, {1, 2}})
    ->UseRealTime();

BENCHMARK(BM_AttentionWeightedSum)
    ->ArgNames({"calls", "queries", "keys", "dim", "threads"})
    ->ArgsProduct({{16}, {32}, {512}, {64}, {1, 2}})
    ->ArgsProduct({{1}, {16}, {512, 4096}, {256}, {1, 2}})
    ->UseRealTime();

BENCHMARK(BM_AttentionScoresBf16)
    ->ArgNames({"calls", "queries", "keys", "dim", "threads"})
    ->ArgsProduct({{16}, {32}, {512}, {128}, {1, 2}})
    ->UseRealTime();

BENCHMARK(BM_AttentionWeightedSumBf16)
    ->ArgNames({"calls", "queries", "keys", "dim", "threads"})
    ->ArgsProduct({{16}, {32}, {512}, {64}, {1, 2}})
    ->UseRealTime();

BENCHMARK(BM_RmsNorm)
    ->ArgNames({"n", "threads"})
    ->ArgsProduct({{1024, 7168}, {1, 2}})
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
