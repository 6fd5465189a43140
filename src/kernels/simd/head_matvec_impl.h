// kernels/head_matvec.h's product, written once against a vector type V (see matmul_impl.h),
// which also provides bf16_pair_words(p, even, odd): kLanes packed 32-bit words from p, their
// low and high bf16 halves as floats. The including file includes kernels/head_matvec.h
// (kHeadBlockRows) before its target pragma.
#pragma once

namespace dsv3::kernels::simd {
namespace {

// Lines of the bytes a product reads next, prefetched into L2 a few per column pair as it goes:
// the per-head matrices are 32 KB apart from anything read before them, and a product
// started cold waits on memory for most of its time.
struct HeadPrefetch {
  const char* next = nullptr;
  const char* end = nullptr;
  int64_t lines_per_pair = 0;
  inline void step() {
    for (int64_t i = 0; i < lines_per_pair && next < end; ++i, next += 64)
      __builtin_prefetch(next, 0, 2);
  }
};

// kParts vectors of kLanes rows (from row `part0 * kLanes`) for one token: two accumulator
// chains per vector, the even and the odd columns.
template <class V, int kParts>
inline void head_rows_tile(const uint16_t* packed, int64_t rows, int64_t cols, int64_t part0,
                           const float* x, float* out, HeadPrefetch& prefetch) {
  constexpr int L = V::kLanes;
  constexpr int64_t kBlockRows = kHeadBlockRows;
  const int64_t pairs = (cols + 1) / 2, full_pairs = cols / 2;
  typename V::F even[kParts], odd[kParts];
  const uint16_t* base[kParts];
#pragma GCC unroll 8
  for (int q = 0; q < kParts; ++q) {
    even[q] = V::zero();
    odd[q] = V::zero();
    const int64_t row = (part0 + q) * L;
    base[q] = packed + (row / kBlockRows) * pairs * kBlockRows * 2 + (row % kBlockRows) * 2;
  }
  typename V::F lows[kParts], highs[kParts];
  for (int64_t p = 0; p < full_pairs; ++p) {
    prefetch.step();
    const auto x_even = V::set1(x[2 * p]), x_odd = V::set1(x[2 * p + 1]);
#pragma GCC unroll 8
    for (int q = 0; q < kParts; ++q) {
      V::bf16_pair_words(base[q] + p * kBlockRows * 2, lows[q], highs[q]);
      even[q] = V::fma(lows[q], x_even, even[q]);
      odd[q] = V::fma(highs[q], x_odd, odd[q]);
    }
  }
  if (full_pairs < pairs) {  // an odd column count: the last column has no odd partner
    const auto x_even = V::set1(x[2 * full_pairs]);
#pragma GCC unroll 8
    for (int q = 0; q < kParts; ++q) {
      V::bf16_pair_words(base[q] + full_pairs * kBlockRows * 2, lows[q], highs[q]);
      even[q] = V::fma(lows[q], x_even, even[q]);
    }
  }
#pragma GCC unroll 8
  for (int q = 0; q < kParts; ++q) {
    const int64_t row = (part0 + q) * L;
    const auto sum = V::add(even[q], odd[q]);
    if (row + L <= rows) {
      V::store(out + row, sum);
    } else if (row < rows) {
      V::store_partial(out + row, sum, int(rows - row));
    }
  }
}

// Four vectors of rows per tile (eight accumulator chains: enough for the FMA latency), the
// last tile of a matrix whatever is left.
template <class V>
void head_matvec(const uint16_t* packed, int64_t rows, int64_t cols, const float* x,
                 int64_t n_tokens, float* out, const void* prefetch_next,
                 int64_t prefetch_bytes) {
  constexpr int L = V::kLanes;
  constexpr int kTileParts = 4;
  const int64_t parts = (rows + L - 1) / L;
  HeadPrefetch prefetch;
  if (prefetch_next != nullptr && prefetch_bytes > 0) {
    int64_t steps = n_tokens * ((parts + kTileParts - 1) / kTileParts) * (cols / 2);
    if (steps < 1) steps = 1;
    prefetch.next = static_cast<const char*>(prefetch_next);
    prefetch.end = prefetch.next + prefetch_bytes;
    prefetch.lines_per_pair = ((prefetch_bytes + 63) / 64 + steps - 1) / steps;
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * cols;
    float* out_t = out + t * rows;
    int64_t part = 0;
    for (; part + kTileParts <= parts; part += kTileParts)
      head_rows_tile<V, kTileParts>(packed, rows, cols, part, xt, out_t, prefetch);
    switch (parts - part) {
      case 3: head_rows_tile<V, 3>(packed, rows, cols, part, xt, out_t, prefetch); break;
      case 2: head_rows_tile<V, 2>(packed, rows, cols, part, xt, out_t, prefetch); break;
      case 1: head_rows_tile<V, 1>(packed, rows, cols, part, xt, out_t, prefetch); break;
      default: break;
    }
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd
