#include "cache/latent_cache.h"

#include <algorithm>
#include <string>

#include "tensor/dtype.h"
#include "util/error.h"

namespace dsv3 {

LatentCache::LatentCache(const Config& config, int64_t capacity, CacheElement element)
    : layers_(config.num_hidden_layers),
      capacity_(capacity),
      latent_dim_(config.kv_lora_rank),
      rope_dim_(config.qk_rope_head_dim),
      element_(element) {
  if (capacity <= 0) throw Error("cache capacity must be positive, got " + std::to_string(capacity));
  const size_t values = size_t(layers_) * size_t(capacity_) * size_t(row_size());
  if (holds_bf16())
    bf16_storage_.assign(values, 0);
  else
    f32_storage_.assign(values, 0.0f);
}

float* LatentCache::f32_row(int64_t layer, int64_t position) {
  if (holds_bf16()) throw Error("cache: f32_row of a bf16 cache");
  return f32_storage_.data() + offset(layer, position);
}

const float* LatentCache::f32_row(int64_t layer, int64_t position) const {
  if (holds_bf16()) throw Error("cache: f32_row of a bf16 cache");
  return f32_storage_.data() + offset(layer, position);
}

uint16_t* LatentCache::bf16_row(int64_t layer, int64_t position) {
  if (!holds_bf16()) throw Error("cache: bf16_row of a float cache");
  return bf16_storage_.data() + offset(layer, position);
}

const uint16_t* LatentCache::bf16_row(int64_t layer, int64_t position) const {
  if (!holds_bf16()) throw Error("cache: bf16_row of a float cache");
  return bf16_storage_.data() + offset(layer, position);
}

void LatentCache::write_row(int64_t layer, int64_t position, const float* values) {
  if (!holds_bf16()) {
    std::copy_n(values, row_size(), f32_row(layer, position));
    return;
  }
  uint16_t* row = bf16_row(layer, position);
  for (int64_t c = 0; c < row_size(); ++c) row[c] = f32_to_bf16(values[c]);
}

void LatentCache::read_rows(int64_t layer, int64_t first, int64_t count, int64_t c0,
                            int64_t cols, float* out, int64_t out_stride) const {
  for (int64_t i = 0; i < count; ++i) {
    float* row_out = out + i * out_stride;
    if (holds_bf16()) {
      const uint16_t* row = bf16_row(layer, first + i) + c0;
      for (int64_t c = 0; c < cols; ++c) row_out[c] = bf16_to_f32(row[c]);
    } else {
      std::copy_n(f32_row(layer, first + i) + c0, cols, row_out);
    }
  }
}

void LatentCache::copy_positions(const LatentCache& other, int64_t positions) {
  if (other.element_ != element_ || other.layers_ != layers_ || other.row_size() != row_size() ||
      positions < 0 || positions > capacity_ || positions > other.capacity_)
    throw Error("cache: cannot copy between caches of different shapes or elements");
  const size_t values = size_t(positions) * size_t(row_size());
  for (int64_t layer = 0; layer < layers_; ++layer) {
    if (holds_bf16())
      std::copy_n(other.bf16_row(layer, 0), values, bf16_row(layer, 0));
    else
      std::copy_n(other.f32_row(layer, 0), values, f32_row(layer, 0));
  }
}

void LatentCache::reserve_positions(int64_t new_tokens) const {
  if (new_tokens < 0 || length_ + new_tokens > capacity_)
    throw Error("context full: " + std::to_string(length_) + " cached + " +
                std::to_string(new_tokens) + " new tokens exceed the context of " +
                std::to_string(capacity_) + " tokens");
}

void LatentCache::advance(int64_t new_tokens) {
  reserve_positions(new_tokens);
  length_ += new_tokens;
}

void LatentCache::truncate(int64_t length) {
  if (length < 0 || length > length_)
    throw Error("cannot truncate a cache of " + std::to_string(length_) + " tokens to " +
                std::to_string(length));
  length_ = length;
}

}  // namespace dsv3
