#include "api/cache.h"

#include <algorithm>
#include <string>

#include "util/error.h"

namespace dsv3::api {

namespace {
constexpr int64_t kInitialCapacity = 64;
}

Cache::Cache(const Config& config, int64_t batch_size, CacheElement element) : config_(config) {
  if (batch_size < 1)
    throw Error("cache: batch size must be positive, got " + std::to_string(batch_size));
  rows_.reserve(size_t(batch_size));
  for (int64_t b = 0; b < batch_size; ++b) rows_.emplace_back(config_, kInitialCapacity, element);
}

int64_t Cache::get_seq_length() const { return rows_.front().length(); }

void Cache::crop(int64_t length) {
  if (length < 0 || length > get_seq_length())
    throw Error("cache: cannot crop " + std::to_string(get_seq_length()) + " cached tokens to " +
                std::to_string(length));
  for (auto& row : rows_) row.truncate(length);
}

void Cache::reserve(int64_t length) {
  for (auto& row : rows_) {
    if (length <= row.capacity()) continue;
    // A static cache of twice the size, then the cached positions copied over.
    LatentCache bigger(config_, std::max(length, 2 * row.capacity()), row.element());
    bigger.copy_positions(row, row.length());
    bigger.advance(row.length());
    row = std::move(bigger);
  }
}

LatentCache& Cache::sequence(int64_t index) {
  if (index < 0 || index >= batch_size())
    throw Error("cache: sequence " + std::to_string(index) + " of a batch of " +
                std::to_string(batch_size()));
  return rows_[size_t(index)];
}

int64_t Cache::bytes() const {
  int64_t total = 0;
  for (const auto& row : rows_) total += row.capacity() * row.bytes_per_token();
  return total;
}

}  // namespace dsv3::api
