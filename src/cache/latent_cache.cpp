#include "cache/latent_cache.h"

#include <string>

#include "util/error.h"

namespace dsv3 {

LatentCache::LatentCache(const Config& config, int64_t capacity)
    : layers_(config.num_hidden_layers),
      capacity_(capacity),
      latent_dim_(config.kv_lora_rank),
      rope_dim_(config.qk_rope_head_dim) {
  if (capacity <= 0) throw Error("cache capacity must be positive, got " + std::to_string(capacity));
  storage_.assign(size_t(layers_) * size_t(capacity_) * size_t(row_size()), 0.0f);
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
