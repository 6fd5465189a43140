// Compile-time counts for the register tiles of the kernels: a run-time count dispatched to a
// template instance, and a batch of tokens cut into passes of whole tiles. Include from the
// kernel files (everything here has internal linkage).
#pragma once

#include <cstdint>
#include <type_traits>

namespace dsv3::kernels::simd {
namespace {

// Calls body(std::integral_constant<int, n>) for a run-time n in [1, kMax].
template <int kMax, class Body>
inline void with_token_count(int64_t n, Body&& body) {
  if constexpr (kMax >= 1) {
    if (n == kMax) return body(std::integral_constant<int, kMax>());
    return with_token_count<kMax - 1>(n, body);
  }
}

// The tokens [0, n_tokens) as passes of at most kMax tokens, sized evenly (5 and 6, not 6 and
// a remainder): body(pass, first token, std::integral_constant<int, count>). A pass of one or
// two tokens still reads the whole weight panel and costs over half a full pass.
template <int kMax, class Body>
inline void for_token_tiles(int64_t n_tokens, Body&& body) {
  const int64_t passes = (n_tokens + kMax - 1) / kMax;
  const int64_t base = passes > 0 ? n_tokens / passes : 0, longer = n_tokens - base * passes;
  for (int64_t pass = 0, token = 0; pass < passes; ++pass) {
    const int64_t n = base + (pass < longer ? 1 : 0);
    with_token_count<kMax>(n, [&](auto tokens) { body(pass, token, tokens); });
    token += n;
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd
