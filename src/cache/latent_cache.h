// The MLA cache: per layer and position only the compressed latent (kv_lora_rank values after
// kv_a_layernorm) and the rotated rope key (qk_rope_head_dim values), never per-head keys and
// values. Allocated once for a fixed capacity (a static cache); filling past it is an error.
//
// Its values are floats, or bf16 (rounded to nearest even when written: half the bytes, what
// transformers' cache holds when the model runs in bfloat16). Model::new_cache picks bf16 where
// the attention runs in bf16 (attention.h); the attention reads either.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dsv3 {

enum class CacheElement { kF32, kBf16 };

class LatentCache {
 public:
  LatentCache(const Config& config, int64_t capacity, CacheElement element = CacheElement::kF32);

  int64_t capacity() const { return capacity_; }
  // Positions already processed by every layer.
  int64_t length() const { return length_; }
  int64_t latent_dim() const { return latent_dim_; }
  int64_t rope_dim() const { return rope_dim_; }
  CacheElement element() const { return element_; }
  bool holds_bf16() const { return element_ == CacheElement::kBf16; }

  // Row of `layer` at `position`: latent_dim values, then rope_dim values; a layer's rows lie
  // row_size() elements apart. f32_row of a float cache, bf16_row of a bf16 one (else throws).
  float* f32_row(int64_t layer, int64_t position);
  const float* f32_row(int64_t layer, int64_t position) const;
  uint16_t* bf16_row(int64_t layer, int64_t position);
  const uint16_t* bf16_row(int64_t layer, int64_t position) const;
  int64_t row_size() const { return latent_dim_ + rope_dim_; }

  // Stores row_size() values at (layer, position), rounded to bf16 in a bf16 cache.
  void write_row(int64_t layer, int64_t position, const float* values);
  // out[i * out_stride + c] = value c0 + c of the row at (layer, first + i) as a float, for
  // i < count and c < cols.
  void read_rows(int64_t layer, int64_t first, int64_t count, int64_t c0, int64_t cols,
                 float* out, int64_t out_stride) const;
  // Copies the first `positions` positions of every layer from `other` (same shape and element).
  void copy_positions(const LatentCache& other, int64_t positions);

  // Throws when `new_tokens` more positions do not fit.
  void reserve_positions(int64_t new_tokens) const;
  // Marks `new_tokens` more positions as filled (after every layer wrote them).
  void advance(int64_t new_tokens);
  // Forgets positions from `length` on (rewinding, e.g. to reuse a shared prefix).
  void truncate(int64_t length);
  void clear() { length_ = 0; }

  // Bytes of one value, of the cache one token takes in one layer, and over all layers.
  int64_t element_bytes() const { return holds_bf16() ? 2 : 4; }
  int64_t bytes_per_token_per_layer() const { return row_size() * element_bytes(); }
  int64_t bytes_per_token() const { return bytes_per_token_per_layer() * layers_; }
  // What a cache of expanded per-head keys and values (transformers' DynamicCache) would take
  // per token and layer, in the same element size: heads x (qk_head_dim + v_head_dim).
  int64_t expanded_bytes_per_token_per_layer(const Config& config) const {
    return config.num_attention_heads * (config.qk_head_dim() + config.v_head_dim) *
           element_bytes();
  }

 private:
  int64_t offset(int64_t layer, int64_t position) const {
    return (layer * capacity_ + position) * row_size();
  }

  int64_t layers_;
  int64_t capacity_;
  int64_t latent_dim_;
  int64_t rope_dim_;
  CacheElement element_;
  int64_t length_ = 0;
  std::vector<float> f32_storage_;      // a float cache's
  std::vector<uint16_t> bf16_storage_;  // a bf16 cache's
};

}  // namespace dsv3
