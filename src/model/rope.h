// Rotary position embedding of the qk_rope_head_dim part of queries and keys, with the
// scalings of transformers' modeling_rope_utils (default, linear, dynamic NTK, YaRN).
// Applied the original way: each pair of the head is rotated by a complex number
// (pairs (2i, 2i+1) with rope_interleave, as DeepSeek's weights are laid out; pairs
// (i, i + d/2) otherwise). Only dot products of rotated queries and keys are used, so keeping
// the pairs in place gives the same attention as transformers' de-interleave + rotate_half.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dsv3 {

class Rope {
 public:
  explicit Rope(const Config& config);

  // The rotation of one position: qk_rope_head_dim / 2 complex numbers (cos, sin pairs),
  // YaRN's attention factor included. `sequence_length` (max position + 1 of the forward
  // pass) matters only for dynamic NTK.
  struct Rotation {
    std::vector<float> cos, sin;
  };
  Rotation rotation(int64_t position, int64_t sequence_length) const;
  // The same into `out`, reusing its storage.
  void rotation(int64_t position, int64_t sequence_length, Rotation& out) const;

  // Rotates `heads` vectors of qk_rope_head_dim floats, `stride` floats apart.
  void apply(const Rotation& rotation, float* x, int64_t heads, int64_t stride) const;

  // The softmax scale of attention: qk_head_dim^-0.5, times mscale(factor, mscale_all_dim)^2
  // when rope_scaling sets mscale_all_dim (the YaRN attention temperature).
  double softmax_scale() const { return softmax_scale_; }
  // YaRN's factor on cos and sin (1 for other types).
  double attention_factor() const { return attention_factor_; }
  const std::vector<double>& inv_freq() const { return inv_freq_; }

 private:
  std::vector<double> inv_freq_for(int64_t sequence_length) const;
  // The cosines and sines of `position` for the frequencies `inv_freq`.
  void compute(const std::vector<double>& inv_freq, int64_t position, float* cos,
               float* sin) const;
  void build_table();

  int64_t dim_;
  bool interleave_;
  double theta_;
  std::optional<RopeScaling> scaling_;
  int64_t max_position_embeddings_;
  std::vector<double> inv_freq_;
  double attention_factor_ = 1.0;
  double softmax_scale_ = 1.0;
  // The rotations of positions [0, table_positions_) for inv_freq_, computed once: per
  // position dim / 2 cosines, then dim / 2 sines (a 512-token prompt computed its 16 K of
  // each in double, about 1 ms, in every pass).
  std::vector<float> table_;
  int64_t table_positions_ = 0;
};

}  // namespace dsv3
