// A small, fast pseudo-random generator with the same stream on every platform and compiler:
// xoshiro256+ (Blackman & Vigna) seeded through splitmix64. Used for sampling and for random
// test checkpoints, where reproducibility from a seed matters.
#pragma once

#include <cstdint>

namespace dsv3 {

class Random {
 public:
  explicit Random(uint64_t seed) {
    for (auto& word : state_) {  // splitmix64
      seed += 0x9e3779b97f4a7c15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      word = z ^ (z >> 31);
    }
  }

  // Uniform in [0, 1), 53 random bits.
  double uniform() {
    const uint64_t result = state_[0] + state_[3];
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = (state_[3] << 45) | (state_[3] >> 19);
    return double(result >> 11) * 0x1.0p-53;
  }

 private:
  uint64_t state_[4];
};

}  // namespace dsv3
