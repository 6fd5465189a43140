// Choosing the next token from logits the way transformers' generate() does: repetition
// penalty, then temperature, top-k, top-p and min-p, then a draw (or argmax when greedy).
// Draws come from our own seeded generator, so a seed gives the same tokens on every run and
// for any number of threads.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "util/random.h"

namespace dsv3 {

struct SamplingParams {
  bool do_sample = false;   // false: greedy (argmax); temperature 0 also means greedy
  float temperature = 1.0f;
  int64_t top_k = 0;        // 0: off
  float top_p = 1.0f;       // 1: off
  float min_p = 0.0f;       // 0: off
  float repetition_penalty = 1.0f;  // 1: off
  uint64_t seed = 0;

  bool greedy() const { return !do_sample || temperature <= 0.0f; }
  // Throws dsv3::Error naming the parameter when out of range.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks the next token. `logits` ([vocab]) is modified (penalised, scaled, filtered);
  // `history` is every token so far (prompt and generated), for the repetition penalty.
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);

  // The probabilities the next draw would use, after all processing (for tests).
  std::vector<float> probabilities(std::span<float> logits, std::span<const int32_t> history) const;

  const SamplingParams& params() const { return params_; }

 private:
  void process(std::span<float> logits, std::span<const int32_t> history) const;

  SamplingParams params_;
  Random random_;
};

// Index of the largest value, the lowest index among equals.
int32_t argmax(std::span<const float> values);

}  // namespace dsv3
