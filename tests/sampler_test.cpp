#include "generate/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "util/error.h"

namespace dsv3 {
namespace {

// argmax against the one-pass definition (first index of the largest, NaN never larger, a NaN
// first value kept) at odd sizes, with ties, signed zeros, infinities and NaN.
TEST(Argmax, FirstIndexOfTheLargest) {
  auto reference = [](const std::vector<float>& values) {
    size_t best = 0;
    for (size_t i = 1; i < values.size(); ++i)
      if (values[i] > values[best]) best = i;
    return int32_t(best);
  };
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-3, 3);
  for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(7), size_t(8), size_t(9), size_t(31),
                   size_t(1000), size_t(1001)}) {
    for (int pattern = 0; pattern < 6; ++pattern) {
      std::vector<float> values(n);
      for (float& v : values) v = float(small(rng));  // many ties
      if (n > 0 && pattern == 1) values[0] = NAN;
      if (n > 2 && pattern == 2) values[n / 2] = NAN;
      if (pattern == 3)
        for (float& v : values) v = (rng() % 2) ? 0.0f : -0.0f;
      if (n > 1 && pattern == 4) values[n - 1] = INFINITY;
      if (pattern == 5)
        for (float& v : values) v = -INFINITY;
      EXPECT_EQ(argmax(values), reference(values)) << "n " << n << " pattern " << pattern;
    }
  }
}

std::vector<float> log_probs(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(float(std::log(p)));
  return logits;
}

std::vector<double> frequencies(SamplingParams params, const std::vector<float>& logits, int draws) {
  Sampler sampler(params);
  std::vector<double> counts(logits.size(), 0.0);
  for (int i = 0; i < draws; ++i) {
    std::vector<float> copy = logits;
    counts[sampler.sample(copy, {})] += 1.0;
  }
  for (double& count : counts) count /= draws;
  return counts;
}

SamplingParams sampling(uint64_t seed = 1) {
  SamplingParams params;
  params.do_sample = true;
  params.seed = seed;
  return params;
}

TEST(Sampler, GreedyIsArgmax) {
  const std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.9f};
  SamplingParams params;  // do_sample false
  std::vector<float> copy = logits;
  EXPECT_EQ(Sampler(params).sample(copy, {}), 1);
  params = sampling();
  params.temperature = 0.0f;  // temperature 0 means greedy
  copy = logits;
  EXPECT_EQ(Sampler(params).sample(copy, {}), 1);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  const std::vector<float> logits = {0.5f, 1.0f, 0.9f, -2.0f, 0.95f};
  SamplingParams top_k = sampling(3);
  top_k.top_k = 1;
  SamplingParams top_p = sampling(4);
  top_p.top_p = 1e-6f;
  for (auto params : {top_k, top_p}) {
    Sampler sampler(params);
    for (int i = 0; i < 200; ++i) {
      std::vector<float> copy = logits;
      ASSERT_EQ(sampler.sample(copy, {}), 1);
    }
  }
}

TEST(Sampler, SeedReproducible) {
  const std::vector<float> logits = log_probs({0.2, 0.2, 0.2, 0.2, 0.2});
  auto draw = [&](uint64_t seed) {
    Sampler sampler(sampling(seed));
    std::vector<int32_t> ids;
    for (int i = 0; i < 64; ++i) {
      std::vector<float> copy = logits;
      ids.push_back(sampler.sample(copy, {}));
    }
    return ids;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(Sampler, DrawsFollowTheDistribution) {
  const std::vector<double> probs = {0.5, 0.3, 0.2};
  const int draws = 40000;
  auto freq = frequencies(sampling(7), log_probs(probs), draws);
  for (size_t i = 0; i < probs.size(); ++i) {
    const double sigma = std::sqrt(probs[i] * (1 - probs[i]) / draws);
    EXPECT_NEAR(freq[i], probs[i], 4 * sigma) << i;
  }
  // Temperature 2 flattens: p_i ~ sqrt(p_i).
  SamplingParams hot = sampling(8);
  hot.temperature = 2.0f;
  freq = frequencies(hot, log_probs(probs), draws);
  double total = 0;
  for (double p : probs) total += std::sqrt(p);
  for (size_t i = 0; i < probs.size(); ++i) {
    const double expected = std::sqrt(probs[i]) / total;
    EXPECT_NEAR(freq[i], expected, 4 * std::sqrt(expected * (1 - expected) / draws)) << i;
  }
}

TEST(Sampler, FiltersRenormalise) {
  const std::vector<float> logits = log_probs({0.5, 0.3, 0.2});
  SamplingParams params = sampling();
  params.top_k = 2;
  std::vector<float> copy = logits;
  auto probs = Sampler(params).probabilities(copy, {});
  EXPECT_NEAR(probs[0], 0.625, 1e-5);
  EXPECT_NEAR(probs[1], 0.375, 1e-5);
  EXPECT_EQ(probs[2], 0.0f);

  params = sampling();
  params.top_p = 0.7f;  // ascending cumulative: 0.2 <= 0.3 removed, 0.5 > 0.3 kept
  copy = logits;
  probs = Sampler(params).probabilities(copy, {});
  EXPECT_EQ(probs[2], 0.0f);
  EXPECT_NEAR(probs[0], 0.625, 1e-5);

  params = sampling();
  params.min_p = 0.5f;  // keeps p >= 0.25
  copy = logits;
  probs = Sampler(params).probabilities(copy, {});
  EXPECT_EQ(probs[2], 0.0f);
  EXPECT_NEAR(probs[1], 0.375, 1e-5);
}

TEST(Sampler, RepetitionPenaltyAsTransformers) {
  SamplingParams params;
  params.repetition_penalty = 2.0f;
  std::vector<float> logits = {2.0f, 1.0f, -1.0f, 0.5f};
  const std::vector<int32_t> history = {0, 2, 2};
  Sampler(params).sample(logits, history);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);   // positive: divided
  EXPECT_FLOAT_EQ(logits[1], 1.0f);   // unseen: unchanged
  EXPECT_FLOAT_EQ(logits[2], -2.0f);  // negative: multiplied, once despite two occurrences
  EXPECT_FLOAT_EQ(logits[3], 0.5f);
}

TEST(Sampler, RejectsBadParameters) {
  SamplingParams params;
  params.top_p = 0.0f;
  EXPECT_THROW(Sampler{params}, Error);
  params = SamplingParams();
  params.temperature = -1.0f;
  EXPECT_THROW(Sampler{params}, Error);
  params = SamplingParams();
  params.top_k = -3;
  EXPECT_THROW(Sampler{params}, Error);
}

}  // namespace
}  // namespace dsv3
