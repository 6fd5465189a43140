#include "bench_decode.h"

#include <chrono>
#include <span>
#include <vector>

#include "generate/sampler.h"

namespace dsv3::cli {

double decode(const CausalLM& model, int32_t first, LatentCache& cache, int64_t count,
              const std::function<void(int64_t)>& between) {
  using Clock = std::chrono::steady_clock;
  int32_t token = first;
  double seconds = 0;
  for (int64_t i = 0; i < count; ++i) {
    const auto start = Clock::now();
    std::vector<float> logits = model.forward(std::span(&token, 1), cache, 1);
    token = argmax(logits);
    seconds += std::chrono::duration<double>(Clock::now() - start).count();
    if (between && ((i + 1) % kTokensPerSample == 0 || i + 1 == count))
      between(i / kTokensPerSample);
  }
  return seconds;
}

SampledDecode decode_sampled(const CausalLM& model, int32_t first, LatentCache& cache,
                             int64_t count, const kernels::ReadBandwidthProbe& probe) {
  double sample_gb = 0, sample_seconds = 0;  // what the samples read, and the time they took
  SampledDecode result;
  result.seconds = decode(model, first, cache, count, [&](int64_t sample) {
    const double gb = double(probe.bytes()) / double(kSampleSlices) / 1e9;
    sample_seconds += gb / probe.measure_slice(sample % kSampleSlices, kSampleSlices);
    sample_gb += gb;
  });
  result.bandwidth_gb_s = sample_gb / sample_seconds;
  return result;
}

std::vector<double> roofline_shares(const std::vector<double>& tok_s_runs, double bytes_per_token,
                                    const std::vector<double>& bandwidths_gb_s) {
  std::vector<double> shares;
  for (size_t run = 0; run < tok_s_runs.size(); ++run)
    shares.push_back(kernels::roofline_pct(tok_s_runs[run], bytes_per_token, bandwidths_gb_s[run]));
  return shares;
}

}  // namespace dsv3::cli
