// The median of repeated measurements (the benchmarks' headline figures): the middle value, or
// the mean of the two middle ones for an even count. `values` must not be empty.
#pragma once

#include <algorithm>
#include <vector>

namespace dsv3::cli {

inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace dsv3::cli
