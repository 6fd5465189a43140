// Measurements of this machine's physical limits, so benchmarks can print every figure as a
// share of what the hardware allows: memory read bandwidth (a STREAM-like sum over a buffer
// far larger than the caches) and peak arithmetic (an unrolled FMA / BF16 dot-product loop on
// every thread of the pool).
#pragma once

#include <cstdint>
#include <memory>

namespace dsv3::kernels {

// GB/s (1e9 bytes/s) reading `bytes` with all pool threads; best of `repetitions`.
double measure_read_bandwidth(int64_t bytes = int64_t(1) << 30, int repetitions = 5);

// The same measurement repeated over one buffer, allocated and touched once: a shared host's
// bandwidth changes from second to second, so a benchmark probes it beside each run it
// compares with the roofline.
class ReadBandwidthProbe {
 public:
  explicit ReadBandwidthProbe(int64_t bytes = int64_t(1) << 30);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // GB/s, best of `repetitions` reads of the whole buffer.
  double measure(int repetitions = 5) const;
  // Runs run() between two quick probes and returns the mean of the two: the bandwidth the run
  // had, as near as a shared host lets one tell.
  template <class Run>
  double measure_around(Run&& run) const {
    constexpr int kQuickRepetitions = 3;
    const double before = measure(kQuickRepetitions);
    run();
    return 0.5 * (before + measure(kQuickRepetitions));
  }
  // GB/s of one read of slice `index` (of `slices` equal slices) of the buffer: a short sample
  // (a 256 MB slice takes a few milliseconds) to take between the steps of a run, so that the
  // bandwidth is sampled while the run goes on instead of only before and after it.
  double measure_slice(int64_t index, int64_t slices) const;
  // The buffer's bytes (resident from construction on).
  int64_t bytes() const { return floats_ * int64_t(sizeof(float)); }

 private:
  struct Buffer;
  std::unique_ptr<Buffer> buffer_;
  int64_t floats_;
};

// Percent of the bandwidth roofline (bandwidth / bytes read per token) that a decode speed is.
inline double roofline_pct(double tokens_per_s, double bytes_per_token, double gb_s) {
  return 100.0 * tokens_per_s * bytes_per_token / (gb_s * 1e9);
}

// GFLOP/s (a multiply-add counts 2) of float32 FMA on all pool threads.
double measure_peak_gflops_f32();
// GFLOP/s of the AVX-512 BF16 dot product (vdpbf16ps: 32 multiply-adds per instruction);
// 0 when the CPU has no AVX512_BF16.
double measure_peak_gflops_bf16();

}  // namespace dsv3::kernels
