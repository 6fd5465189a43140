// Deterministic token ids spread over the vocabulary, for the programs that feed a model a
// fixed sequence (bench prompts, the quantization accuracy sequence): the same ids for a given
// seed on every platform, the first one id 0.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv3::cli {

inline std::vector<int32_t> spread_token_ids(int64_t count, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(count));
  uint64_t state = seed;
  for (auto& id : ids) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;  // 64-bit LCG (Knuth)
    id = int32_t((state >> 33) % uint64_t(vocab));
  }
  if (!ids.empty()) ids[0] = 0;
  return ids;
}

}  // namespace dsv3::cli
