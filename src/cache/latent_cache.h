// The MLA cache: per layer and position only the compressed latent (kv_lora_rank values after
// kv_a_layernorm) and the rotated rope key (qk_rope_head_dim values), never per-head keys and
// values. Allocated once for a fixed capacity (a static cache); filling past it is an error.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dsv3 {

class LatentCache {
 public:
  LatentCache(const Config& config, int64_t capacity);

  int64_t capacity() const { return capacity_; }
  // Positions already processed by every layer.
  int64_t length() const { return length_; }
  int64_t latent_dim() const { return latent_dim_; }
  int64_t rope_dim() const { return rope_dim_; }

  // Row of `layer` at `position`: latent_dim values, then rope_dim values.
  float* row(int64_t layer, int64_t position) {
    return storage_.data() + (layer * capacity_ + position) * row_size();
  }
  const float* row(int64_t layer, int64_t position) const {
    return storage_.data() + (layer * capacity_ + position) * row_size();
  }
  int64_t row_size() const { return latent_dim_ + rope_dim_; }

  // Throws when `new_tokens` more positions do not fit.
  void reserve_positions(int64_t new_tokens) const;
  // Marks `new_tokens` more positions as filled (after every layer wrote them).
  void advance(int64_t new_tokens);
  // Forgets positions from `length` on (rewinding, e.g. to reuse a shared prefix).
  void truncate(int64_t length);
  void clear() { length_ = 0; }

  // Bytes of cache one token takes in one layer, and over all layers.
  int64_t bytes_per_token_per_layer() const { return row_size() * int64_t(sizeof(float)); }
  int64_t bytes_per_token() const { return bytes_per_token_per_layer() * layers_; }
  // What a cache of expanded per-head keys and values (transformers' DynamicCache) would take
  // per token and layer, in the same element size: heads x (qk_head_dim + v_head_dim).
  static int64_t expanded_bytes_per_token_per_layer(const Config& config) {
    return config.num_attention_heads * (config.qk_head_dim() + config.v_head_dim) *
           int64_t(sizeof(float));
  }

 private:
  int64_t layers_;
  int64_t capacity_;
  int64_t latent_dim_;
  int64_t rope_dim_;
  int64_t length_ = 0;
  std::vector<float> storage_;
};

}  // namespace dsv3
