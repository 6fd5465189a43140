// past_key_values: the cache of a batch, one latent cache per sequence (what transformers'
// DynamicCache holds, in MLA's compressed form: per layer and position the kv latent and the
// rope key, never per-head keys and values). Grows as tokens are added.
#pragma once

#include <cstdint>
#include <vector>

#include "cache/latent_cache.h"
#include "model/config.h"

namespace dsv3::api {

class Cache {
 public:
  // Values of `element` (cache/latent_cache.h): a model's forward makes its caches with its
  // engine's cache_element(), bf16 where the attention runs in bf16.
  Cache(const Config& config, int64_t batch_size, CacheElement element = CacheElement::kF32);

  int64_t batch_size() const { return int64_t(rows_.size()); }
  // Tokens cached so far (the same for every sequence of the batch), as get_seq_length().
  int64_t get_seq_length() const;
  // Forgets every position from `length` on (DynamicCache.crop).
  void crop(int64_t length);
  // Makes room for `length` positions in every sequence, keeping what is cached.
  void reserve(int64_t length);
  LatentCache& sequence(int64_t index);
  // Bytes held (all sequences, all layers, the reserved capacity).
  int64_t bytes() const;

 private:
  Config config_;
  std::vector<LatentCache> rows_;
};

}  // namespace dsv3::api
