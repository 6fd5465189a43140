// Greedy decode runs for `dsv3 bench`, timed token by token, and the memory bandwidth the host
// gave while they ran: on a shared host the bandwidth swings within a second, and probes taken
// only before and after a run can catch quieter moments than the run had.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "api/causal_lm.h"
#include "cache/latent_cache.h"
#include "kernels/machine_probe.h"

namespace dsv3::cli {

// Tokens decoded between two samples of the bandwidth (decode_sampled), and the slices of the
// probe's buffer they read in turn (a quarter of 1 GB each: a few milliseconds, far larger than
// the caches).
inline constexpr int64_t kTokensPerSample = 4;
inline constexpr int64_t kSampleSlices = 4;

// Decodes `count` greedy tokens after the cache's content, starting from token `first`; returns
// the tokens' own seconds. `between`, when given, runs after every kTokensPerSample tokens and
// after the last (its argument counting its calls), outside the timing.
double decode(const CausalLM& model, int32_t first, LatentCache& cache, int64_t count,
              const std::function<void(int64_t)>& between = nullptr);

// A decode run and the bandwidth the host gave while it ran.
struct SampledDecode {
  double seconds = 0;         // the tokens' own time, the samples left out
  double bandwidth_gb_s = 0;  // the samples' bytes over their time
};

// decode(), with one slice of the probe's buffer read between its tokens (every
// kTokensPerSample): the same stream of weights is read in every token, so the run's share of
// the bandwidth so sampled is its share of what the host gave it.
SampledDecode decode_sampled(const CausalLM& model, int32_t first, LatentCache& cache,
                             int64_t count, const kernels::ReadBandwidthProbe& probe);

// Each decode run's share of the roofline at its own bandwidth: run i's tokens per second
// against bandwidths_gb_s[i] (kernels::roofline_pct).
std::vector<double> roofline_shares(const std::vector<double>& tok_s_runs, double bytes_per_token,
                                    const std::vector<double>& bandwidths_gb_s);

}  // namespace dsv3::cli
