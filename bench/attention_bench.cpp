// Attention over a latent cache as in an MLA decode step (16 heads, 256 latent + 64 rope values
// per cached position) at cache depths 512 and 4096, in GFLOP/s of the scores and of the
// weighted sum, and the whole step (scores, softmax, weighted sum) split over heads on the
// thread pool, in GB/s of cache rows read.
//
//   build-x/bench/attention_bench [--benchmark_filter=Step]
//
// Arguments: cache depth, then threads (1 or 2) where it applies.
#include <benchmark/benchmark.h>

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

// One layer's attention of one decoded token, heads over the threads, as model/attention.cpp.
// 10 caches (one per layer) are cycled so depth 4096 reads from DRAM as decode does.
void BM_AttentionStep(benchmark::State& state) {
  const int64_t depth = state.range(0);
  dsv3::ThreadPool::global().set_num_threads(int(state.range(1)));
  constexpr int kLayers = 10;
  std::vector<std::vector<float>> caches;
  for (int l = 0; l < kLayers; ++l) caches.push_back(random_floats(size_t(depth * kRow), 1 + l));
  const auto queries = random_floats(size_t(kHeads * kRow), 2, 0.1f);
  std::vector<float> out(size_t(kHeads * kLatent));
  int layer = 0;
  for (auto _ : state) {
    const float* rows = caches[size_t(layer)].data();
    layer = (layer + 1) % kLayers;
    // Units of 4 heads claimed by whichever thread is free, as model/attention.cpp.
    dsv3::ThreadPool::global().parallel_claim(kHeads / 4, [&](int64_t unit) {
      const int64_t h0 = unit * 4;
      thread_local std::vector<float> scores;
      scores.resize(size_t(4 * depth));
      const int64_t counts[4] = {depth, depth, depth, depth};
      dsv3::kernels::attention_scores(queries.data() + h0 * kRow, kRow, 4, rows, kRow, depth,
                                      kRow, 0.1f, scores.data(), depth);
      for (int64_t h = 0; h < 4; ++h) dsv3::kernels::softmax(scores.data() + h * depth, depth);
      dsv3::kernels::attention_weighted_sum(scores.data(), depth, 4, counts, rows, kRow, kLatent,
                                            out.data() + h0 * kLatent, kLatent);
    });
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
BENCHMARK(BM_AttentionStep)->Args({512, 1})->Args({512, 2})->Args({4096, 1})->Args({4096, 2})->UseRealTime();

BENCHMARK_MAIN();
