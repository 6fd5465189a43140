// Attention over a latent cache as in an MLA decode step (16 heads, 256 latent + 64 rope values
// per cached position) at cache depths 512 and 4096, in GFLOP/s of the scores and of the
// weighted sum, and the whole step (scores, softmax, weighted sum) over 512-row chunks on the
// thread pool as a long context in model/attention.cpp, in GB/s of cache rows read; each over a
// float cache and over a bf16 one (the *Bf16Rows kernels, queries rounded to bf16).
//
//   build-x/bench/attention_bench [--benchmark_filter=Step]
//
// Arguments: cache depth, then threads (1 or 2) where it applies.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/attention_bf16.h"
#include "kernels/attention_ops.h"
#include "kernels/ops.h"
#include "tensor/dtype.h"
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

std::vector<uint16_t> rounded(const std::vector<float>& values) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = dsv3::f32_to_bf16(values[i]);
  return bits;
}

// A cache of float or bf16 rows, and the two products over it as model/attention.cpp runs them.
template <class Element>
struct CacheProducts {
  static void scores(const float* queries, const Element* rows, int64_t count, float* scores) {
    if constexpr (std::is_same_v<Element, float>) {
      dsv3::kernels::attention_scores(queries, kRow, kHeads, rows, kRow, count, kRow, 0.1f,
                                      scores, count);
    } else {
      thread_local std::vector<uint16_t> query_rows(size_t(kHeads * kRow));
      dsv3::kernels::round_rows_to_bf16(queries, kRow, kHeads, kRow, query_rows.data(), kRow);
      dsv3::kernels::attention_scores_bf16_rows(query_rows.data(), kRow, kHeads, rows, kRow,
                                                count, kRow, 0.1f, scores, count);
    }
  }
  static void weighted_sum(const float* probs, int64_t probs_stride, const int64_t* counts,
                           const Element* rows, float* out) {
    if constexpr (std::is_same_v<Element, float>) {
      dsv3::kernels::attention_weighted_sum(probs, probs_stride, kHeads, counts, rows, kRow,
                                            kLatent, out, kLatent);
    } else {
      // The probabilities rounded to bf16 rows, as model/attention.cpp does.
      const int64_t rows_stride = (counts[0] + 1) / 2 * 2;
      thread_local std::vector<uint16_t> prob_rows;
      prob_rows.resize(size_t(kHeads * rows_stride));
      dsv3::kernels::round_rows_to_bf16(probs, probs_stride, kHeads, counts[0], prob_rows.data(),
                                        rows_stride);
      dsv3::kernels::attention_weighted_sum_bf16_rows(prob_rows.data(), rows_stride, kHeads,
                                                      counts, rows, kRow, kLatent, out, kLatent);
    }
  }
  static std::vector<Element> cache(size_t n, uint32_t seed) {
    if constexpr (std::is_same_v<Element, float>) {
      return random_floats(n, seed);
    } else {
      return rounded(random_floats(n, seed));
    }
  }
};

template <class Element>
void BM_AttentionScores(benchmark::State& state) {
  const int64_t depth = state.range(0);
  const auto cache = CacheProducts<Element>::cache(size_t(depth * kRow), 1);
  const auto queries = random_floats(size_t(kHeads * kRow), 2);
  std::vector<float> scores(size_t(kHeads * depth));
  for (auto _ : state) {
    CacheProducts<Element>::scores(queries.data(), cache.data(), depth, scores.data());
    benchmark::DoNotOptimize(scores.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(double(2 * kHeads * depth * kRow) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

template <class Element>
void BM_AttentionWeightedSum(benchmark::State& state) {
  const int64_t depth = state.range(0);
  const auto cache = CacheProducts<Element>::cache(size_t(depth * kRow), 1);
  const auto probs = random_floats(size_t(kHeads * depth), 2, 0.01f);
  std::vector<int64_t> counts(kHeads, depth);
  std::vector<float> out(size_t(kHeads * kLatent));
  for (auto _ : state) {
    CacheProducts<Element>::weighted_sum(probs.data(), depth, counts.data(), cache.data(),
                                         out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(double(2 * kHeads * depth * kLatent) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// One layer's attention of one decoded token as model/attention.cpp takes a long context
// (attend_long_context): the rows in chunks of 512 claimed by whichever thread is free, per
// chunk all heads' scores, softmax numerators and weighted sum, then the chunks combined per
// head. 10 caches (one per layer) are cycled so depth 4096 reads from DRAM as decode does.
template <class Element>
void BM_AttentionStep(benchmark::State& state) {
  const int64_t depth = state.range(0);
  dsv3::ThreadPool::global().set_num_threads(int(state.range(1)));
  constexpr int kLayers = 10;
  constexpr int64_t kChunk = 512;
  std::vector<std::vector<Element>> caches;
  for (int l = 0; l < kLayers; ++l)
    caches.push_back(CacheProducts<Element>::cache(size_t(depth * kRow), uint32_t(1 + l)));
  const auto queries = random_floats(size_t(kHeads * kRow), 2, 0.1f);
  const int64_t chunks = (depth + kChunk - 1) / kChunk;
  std::vector<float> partials(size_t(chunks * kHeads * kLatent)), out(size_t(kHeads * kLatent));
  std::vector<float> chunk_max(size_t(chunks * kHeads)), chunk_sum(chunk_max.size());
  int layer = 0;
  for (auto _ : state) {
    const Element* rows = caches[size_t(layer)].data();
    layer = (layer + 1) % kLayers;
    dsv3::ThreadPool::global().parallel_claim(chunks, [&](int64_t chunk) {
      const int64_t first = chunk * kChunk, count = std::min(kChunk, depth - first);
      thread_local std::vector<float> scores;
      scores.resize(size_t(kHeads * count));
      CacheProducts<Element>::scores(queries.data(), rows + first * kRow, count, scores.data());
      for (int64_t h = 0; h < kHeads; ++h) {
        dsv3::kernels::softmax_numerators(scores.data() + h * count, count,
                                          &chunk_max[size_t(chunk * kHeads + h)],
                                          &chunk_sum[size_t(chunk * kHeads + h)]);
      }
      const std::vector<int64_t> counts(kHeads, count);
      CacheProducts<Element>::weighted_sum(scores.data(), count, counts.data(),
                                           rows + first * kRow,
                                           partials.data() + chunk * kHeads * kLatent);
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
  state.counters["GB/s"] = benchmark::Counter(double(depth * kRow * sizeof(Element)) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = benchmark::Counter(
      double(2 * kHeads * depth * (kRow + kLatent)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  dsv3::ThreadPool::global().set_num_threads(0);
}

}  // namespace

BENCHMARK(BM_AttentionScores<float>)->Arg(512)->Arg(4096);
BENCHMARK(BM_AttentionScores<uint16_t>)->Name("BM_AttentionScoresBf16Rows")->Arg(512)->Arg(4096);
BENCHMARK(BM_AttentionWeightedSum<float>)->Arg(512)->Arg(4096);
BENCHMARK(BM_AttentionWeightedSum<uint16_t>)
    ->Name("BM_AttentionWeightedSumBf16Rows")
    ->Arg(512)
    ->Arg(4096);
BENCHMARK(BM_AttentionStep<float>)
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->Args({4096, 1})
    ->Args({4096, 2})
    ->UseRealTime();
BENCHMARK(BM_AttentionStep<uint16_t>)
    ->Name("BM_AttentionStepBf16Rows")
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->Args({4096, 1})
    ->Args({4096, 2})
    ->UseRealTime();

BENCHMARK_MAIN();
