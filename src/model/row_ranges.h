// The per-token loops of the model (norms, residual adds, routing, gathering and scattering
// expert rows) split over the thread pool when there are enough tokens for it to pay (prefill),
// run inline otherwise (decode: waking the pool for one row costs more than the row). Each row
// is computed the same way on any thread, so results never depend on the split.
#pragma once

#include <cstdint>

#include "tensor/thread_pool.h"

namespace dsv3 {

// Fewest rows worth splitting over the pool.
inline constexpr int64_t kMinParallelRows = 16;

// fn(begin, end) over chunks covering [0, n).
template <class Fn>
void for_row_ranges(int64_t n, Fn&& fn) {
  if (n < kMinParallelRows) {
    if (n > 0) fn(int64_t(0), n);
    return;
  }
  ThreadPool::global().parallel_share(n, fn);
}

}  // namespace dsv3
