// Attention over a latent cache as in an MLA decode step (16 heads, 256 latent + 64 rope values
// per cached position) at cache depths 512 and 4096, in GFLOP/s of the scores and of the
// weighted sum, and the whole step (scores, softmax, weighted sum) over 512-row chunks on the
// thread pool as a long context in model/attention.cpp, in GB/s of cache rows read.
//
//   build-x/bench/attention_bench [--benchmark_filter=Step]
//
// Arguments: cache depth, then threads (1 or 2) where it applies.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/attention_ops.h"
#include "kernels/ops.h"
#include "tensor/thread_pool.h"

namespace {

constexpr int64_t kHeads = 16, kLatent = 256, kRope = 64, kRow = kLatent + kRope;

std::vector<float> random_floats(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> values(n);
  for (auto& v : values) v = normal(rng);
  return values;
}

void BM_AttentionScores(benchmark::State& state) {
  const int64_t depth = state.range(0);
  const auto cache = random_floats(size_t(depth * kRow), 1);
  const auto queries = random_floats(size_t(kHeads * kRow), 2);
  std::vector<float> scores(size_t(kHeads * depth));
  for (auto _ : state) {
    dsv3::kernels::attention_scores(queries.data(), kRow, kHeads, cache.data(), kRow, depth, kRow,
                                    0.1f, scores.data(), depth);
    benchmark::DoNotOptimize(scores.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(double(2 * kHeads * depth * kRow) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_AttentionWeightedSum(benchmark::State& state) {
  const int64_t depth = state.range(0);
  const auto cache = random_floats(size_t(depth * kRow), 1);
  const auto probs = random_floats(size_t(kHeads * depth), 2, 0.01f);
  std::vector<int64_t> counts(kHeads, depth);
  std::vector<float> out(size_t(kHeads * kLatent));
  for (auto _ : state) {
    dsv3::kernels::attention_weighted_sum(probs.data(), depth, kHeads, counts.data(), cache.data(),
                                          kRow, kLatent, out.data(), kLatent);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(double(2 * kHeads * depth * kLatent) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// One layer's attention of one decoded token as model/attention.cpp takes a long context
// (attend_long_context): the rows in chunks of 512 claimed by whichever thread is free, per
// chunk all heads' scores, softmax numerators and weighted sum, then the chunks combined per
// head. 10 caches (one per layer) are cycled so depth 4096 reads from DRAM as decode does.
void BM_AttentionStep(benchmark::State& state) {
  const int64_t depth = state.range(0);
  dsv3::ThreadPool::global().set_num_threads(int(state.range(1)));
  constexpr int kLayers = 10;
  constexpr int64_t kChunk = 512;
  std::vector<std::vector<float>> caches;
  for (int l = 0; l < kLayers; ++l) caches.push_back(random_floats(size_t(depth * kRow), 1 + l));
  const auto queries = random_floats(size_t(kHeads * kRow), 2, 0.1f);
  const int64_t chunks = (depth + kChunk - 1) / kChunk;
  std::vector<float> partials(size_t(chunks * kHeads * kLatent)), out(size_t(kHeads * kLatent));
  std::vector<float> chunk_max(size_t(chunks * kHeads)), chunk_sum(chunk_max.size());
  int layer = 0;
  for (auto _ : state) {
    const float* rows = caches[size_t(layer)].data();
    layer = (layer + 1) % kLayers;
    dsv3::ThreadPool::global().parallel_claim(chunks, [&](int64_t chunk) {
      const int64_t first = chunk * kChunk, count = std::min(kChunk, depth - first);
      thread_local std::vector<float> scores;
      scores.resize(size_t(kHeads * count));
      dsv3::kernels::attention_scores(queries.data(), kRow, kHeads, rows + first * kRow, kRow,
                                      count, kRow, 0.1f, scores.data(), count);
      for (int64_t h = 0; h < kHeads; ++h) {
        dsv3::kernels::softmax_numerators(scores.data() + h * count, count,
                                          &chunk_max[size_t(chunk * kHeads + h)],
                                          &chunk_sum[size_t(chunk * kHeads + h)]);
      }
      const std::vector<int64_t> counts(kHeads, count);
      dsv3::kernels::attention_weighted_sum(scores.data(), count, kHeads, counts.data(),
                                            rows + first * kRow, kRow, kLatent,
                                            partials.data() + chunk * kHeads * kLatent, kLatent);
    });
    for (int64_t h = 0; h < kHeads; ++h) {
      float overall_max = -INFINITY, denominator = 0.0f;
      for (int64_t c = 0; c < chunks; ++c)
        overall_max = std::max(overall_max, chunk_max[size_t(c * kHeads + h)]);
      for (int64_t c = 0; c < chunks; ++c)
        denominator += std::exp(chunk_max[size_t(c * kHeads + h)] - overall_max) *
                       chunk_sum[size_t(c * kHeads + h)];
      std::fill_n(out.data() + h * kLatent, kLatent, 0.0f);
      for (int64_t c = 0; c < chunks; ++c) {
        const float weight =
            std::exp(chunk_max[size_t(c * kHeads + h)] - overall_max) / denominator;
        dsv3::kernels::axpy(weight, partials.data() + (c * kHeads + h) * kLatent,
                            out.data() + h * kLatent, kLatent);
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GB/s"] = benchmark::Counter(double(depth * kRow * 4) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = benchmark::Counter(
      double(2 * kHeads * depth * (kRow + kLatent)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  dsv3::ThreadPool::global().set_num_threads(0);
}

}  // namespace

BENCHMARK(BM_AttentionScores)->Arg(512)->Arg(4096);
BENCHMARK(BM_AttentionWeightedSum)->Arg(512)->Arg(4096);
BENCHMARK(BM_AttentionStep)
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->Args({4096, 1})
    ->Args({4096, 2})
    ->UseRealTime();

BENCHMARK_MAIN();
