#include "kernels/machine_probe.h"

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "kernels/cpu_dispatch.h"
#include "tensor/thread_pool.h"
#include "util/error.h"

namespace dsv3::kernels {

namespace {

// Sum of the 16 lanes (GCC 12's _mm512_reduce_add_ps warns about an uninitialized temporary).
__attribute__((target("avx512f"))) float lane_sum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float sum = 0;
  for (float lane : lanes) sum += lane;
  return sum;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

__attribute__((target("avx512f"))) double sum_avx512(const float* data, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(data + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(data + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(data + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(data + i + 48));
  }
  double sum = lane_sum(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; ++i) sum += data[i];
  return sum;
}

double sum_portable(const float* data, int64_t n) {
  float a[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) a[j] += data[i + j];
  double sum = 0;
  for (float v : a) sum += v;
  for (; i < n; ++i) sum += data[i];
  return sum;
}

// Independent accumulator chains per thread: at least latency x throughput of the unit (e.g.
// 2 FMA pipes x 4 cycles = 8; vdpbf16ps on Zen 4: 6 cycles at one per cycle), with margin. The
// operands pass through an empty asm each iteration so the compiler cannot fold the chains.
constexpr int kChains = 24;

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iterations) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(float(j));
  __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (int64_t i = 0; i < iterations; ++i) {
    __asm__ volatile("" : "+v"(a), "+v"(b));
#pragma GCC unroll 24
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  __m512 total = acc[0];
  for (int j = 1; j < kChains; ++j) total = _mm512_add_ps(total, acc[j]);
  return lane_sum(total);
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iterations) {
  __m256 acc[kChains / 2];  // 12 of the 16 vector registers
  for (int j = 0; j < kChains / 2; ++j) acc[j] = _mm256_set1_ps(float(j));
  __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  for (int64_t i = 0; i < iterations; ++i) {
    __asm__ volatile("" : "+x"(a), "+x"(b));
#pragma GCC unroll 12
    for (int j = 0; j < kChains / 2; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  __m256 total = acc[0];
  for (int j = 1; j < kChains / 2; ++j) total = _mm256_add_ps(total, acc[j]);
  float lanes[8];
  _mm256_storeu_ps(lanes, total);
  float sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

__attribute__((target("avx512f,avx512bf16"))) float dpbf16_loop(int64_t iterations) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(float(j));
  __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3a83);
  for (int64_t i = 0; i < iterations; ++i) {
    __asm__ volatile("" : "+v"(a), "+v"(b));
#pragma GCC unroll 24
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  __m512 total = acc[0];
  for (int j = 1; j < kChains; ++j) total = _mm512_add_ps(total, acc[j]);
  return lane_sum(total);
}

// Runs `loop` on every pool thread at once (one chunk per thread) and returns the GFLOP/s of
// all threads together, given the flops of one iteration on one thread: the best of many short
// repetitions, so that a moment of interference from other processes on a shared host does not
// lower the figure (the peak is what the hardware allows, not what one run got).
template <class Loop>
double peak(Loop loop, double flops_per_iteration) {
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.num_threads();
  constexpr int64_t kIterations = 400'000;  // ~10 M instructions: a few ms per repetition
  constexpr int kRepetitions = 15;
  volatile float sink = 0;
  pool.parallel_for(threads,
                    [&](int64_t, int64_t) { sink = sink + loop(kIterations); });  // warm up
  double best = 0;
  for (int repetition = 0; repetition < kRepetitions; ++repetition) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(threads, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) sink = sink + loop(kIterations);
    });
    const double seconds = seconds_since(start);
    best = std::max(best, flops_per_iteration * double(kIterations) * threads / seconds / 1e9);
  }
  return best;
}

// Anonymous memory on 2 MB pages where the kernel has them (transparent huge pages in "always"
// or "madvise" mode), 4 KB pages otherwise. Reading through 4 KB pages costs page walks (TLB
// misses, doubly expensive under virtualization): a quick test here read 4 KB pages at 19-21
// GB/s on one thread and 2 MB pages at 26-28. The roofline is the limit of the memory, not of
// the page size, so the probe reads the pages that reach it (and the weights can be on such
// pages too: io/file_memory.h).
struct HugePageBuffer {
  static constexpr size_t kHugePageBytes = size_t(2) << 20;
  void* mapping = nullptr;
  size_t mapping_bytes = 0;
  void* data = nullptr;

  explicit HugePageBuffer(size_t bytes) : mapping_bytes(bytes + kHugePageBytes) {
    mapping = ::mmap(nullptr, mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (mapping == MAP_FAILED) throw std::bad_alloc();
    const auto address = reinterpret_cast<uintptr_t>(mapping);
    data = static_cast<char*>(mapping) + (kHugePageBytes - address % kHugePageBytes) % kHugePageBytes;
    ::madvise(data, bytes, MADV_HUGEPAGE);  // before the first touch
  }
  ~HugePageBuffer() { ::munmap(mapping, mapping_bytes); }
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;
};

// Floats per piece of a read: 4 MB, long enough to stream at full speed and short enough that
// no thread waits long for the others at the end.
constexpr int64_t kReadPieceFloats = int64_t(1) << 20;

// GB/s of one read of `n` floats with all pool threads, the pieces taken by whichever thread is
// free (a thread that a shared host slows down leaves the rest to the others, as the decode's
// row tasks do).
double read_once(const float* data, int64_t n) {
  const bool avx512 = isa_supported(KernelIsa::kAvx512);
  volatile double sink = 0;
  const int64_t pieces = (n + kReadPieceFloats - 1) / kReadPieceFloats;
  const auto start = std::chrono::steady_clock::now();
  ThreadPool::global().parallel_claim(pieces, [&](int64_t piece) {
    const int64_t begin = piece * kReadPieceFloats, count = std::min(kReadPieceFloats, n - begin);
    sink = sink + (avx512 ? sum_avx512(data + begin, count) : sum_portable(data + begin, count));
  });
  return double(n) * sizeof(float) / seconds_since(start) / 1e9;
}

}  // namespace

struct ReadBandwidthProbe::Buffer : HugePageBuffer {
  using HugePageBuffer::HugePageBuffer;
};

ReadBandwidthProbe::ReadBandwidthProbe(int64_t bytes)
    : buffer_(std::make_unique<Buffer>(size_t(bytes / int64_t(sizeof(float))) * sizeof(float))),
      floats_(bytes / int64_t(sizeof(float))) {
  float* data = static_cast<float*>(buffer_->data);
  // Touch the pages from the threads that will read them.
  ThreadPool::global().parallel_for(floats_, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) data[i] = 1.0f;
  });
}

ReadBandwidthProbe::~ReadBandwidthProbe() = default;

double ReadBandwidthProbe::measure(int repetitions) const {
  const float* data = static_cast<const float*>(buffer_->data);
  double best = 0;
  for (int repetition = 0; repetition < repetitions; ++repetition)
    best = std::max(best, read_once(data, floats_));
  return best;
}

double ReadBandwidthProbe::measure_slice(int64_t index, int64_t slices) const {
  if (slices < 1 || index < 0 || index >= slices)
    throw Error("ReadBandwidthProbe::measure_slice: no slice " + std::to_string(index) + " of " +
                std::to_string(slices));
  int64_t begin, end;
  ThreadPool::chunk_range(floats_ / 64, slices, index, &begin, &end);  // 64-float aligned
  return read_once(static_cast<const float*>(buffer_->data) + begin * 64, (end - begin) * 64);
}

double measure_read_bandwidth(int64_t bytes, int repetitions) {
  return ReadBandwidthProbe(bytes).measure(repetitions);
}

double measure_peak_gflops_f32() {
  if (isa_supported(KernelIsa::kAvx512)) return peak(fma_loop_avx512, kChains * 16.0 * 2);
  if (isa_supported(KernelIsa::kAvx2)) return peak(fma_loop_avx2, kChains / 2 * 8.0 * 2);
  return 0.0;
}

double measure_peak_gflops_bf16() {
  if (!cpu_has_avx512_bf16()) return 0.0;
  return peak(dpbf16_loop, kChains * 32.0 * 2);
}

}  // namespace dsv3::kernels
