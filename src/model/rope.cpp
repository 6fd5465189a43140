#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace dsv3 {

namespace {

double yarn_get_mscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

// transformers computes inv_freq in float32; we round the same way so frequencies agree.
double as_float32(double value) { return double(float(value)); }

std::vector<double> default_inv_freq(int64_t dim, double base) {
  std::vector<double> inv_freq(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i)
    inv_freq[i] = as_float32(1.0 / std::pow(base, double(2 * i) / double(dim)));
  return inv_freq;
}

// YaRN (Peng et al. 2023): blend interpolated and extrapolated frequencies with a linear ramp
// between the dimensions that make beta_fast and beta_slow rotations over the original context.
std::vector<double> yarn_inv_freq(int64_t dim, double base, const RopeScaling& scaling,
                                  int64_t original_max_position) {
  auto correction_dim = [&](double rotations) {
    return (double(dim) * std::log(double(original_max_position) / (rotations * 2.0 * M_PI))) /
           (2.0 * std::log(base));
  };
  double low = correction_dim(scaling.beta_fast);
  double high = correction_dim(scaling.beta_slow);
  if (scaling.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;  // avoid dividing by zero
  std::vector<double> inv_freq(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double pos_freq = std::pow(base, double(2 * i) / double(dim));
    const double extrapolation = 1.0 / pos_freq;
    const double interpolation = 1.0 / (scaling.factor * pos_freq);
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation_weight = 1.0 - ramp;
    inv_freq[i] = as_float32(interpolation * (1.0 - extrapolation_weight) +
                             extrapolation * extrapolation_weight);
  }
  return inv_freq;
}

}  // namespace

Rope::Rope(const Config& config)
    : dim_(config.qk_rope_head_dim),
      interleave_(config.rope_interleave),
      theta_(config.rope_theta),
      scaling_(config.rope_scaling),
      max_position_embeddings_(config.max_position_embeddings) {
  softmax_scale_ = 1.0 / std::sqrt(double(config.qk_head_dim()));
  inv_freq_ = default_inv_freq(dim_, theta_);
  if (!scaling_) {
    build_table();
    return;
  }
  const RopeScaling& scaling = *scaling_;
  if (scaling.type == "linear") {
    for (double& f : inv_freq_) f = as_float32(f / scaling.factor);
  } else if (scaling.type == "yarn") {
    const int64_t original = scaling.original_max_position_embeddings.value_or(max_position_embeddings_);
    inv_freq_ = yarn_inv_freq(dim_, theta_, scaling, original);
    if (scaling.attention_factor)
      attention_factor_ = *scaling.attention_factor;
    else if (scaling.mscale != 0.0 && scaling.mscale_all_dim != 0.0)
      attention_factor_ = yarn_get_mscale(scaling.factor, scaling.mscale) /
                          yarn_get_mscale(scaling.factor, scaling.mscale_all_dim);
    else
      attention_factor_ = yarn_get_mscale(scaling.factor, 1.0);
  }
  // DeepseekV3Attention: any rope_scaling with mscale_all_dim scales the softmax.
  if (scaling.mscale_all_dim != 0.0) {
    const double mscale = yarn_get_mscale(scaling.factor, scaling.mscale_all_dim);
    softmax_scale_ *= mscale * mscale;
  }
  build_table();
}

void Rope::build_table() {
  // Positions a pass at most max_position_embeddings long rotates by inv_freq_ (dynamic NTK
  // changes the frequencies only beyond), up to 16 K of them (4 MB for DeepSeek-V3's 64).
  constexpr int64_t kTablePositions = 16384;
  table_positions_ = std::min(max_position_embeddings_, kTablePositions);
  const int64_t half = dim_ / 2;
  table_.resize(size_t(table_positions_ * 2 * half));
  for (int64_t position = 0; position < table_positions_; ++position) {
    float* entry = table_.data() + position * 2 * half;
    compute(inv_freq_, position, entry, entry + half);
  }
}

void Rope::compute(const std::vector<double>& inv_freq, int64_t position, float* cos,
                   float* sin) const {
  for (int64_t i = 0; i < dim_ / 2; ++i) {
    // transformers forms the angle in float32: float(inv_freq) * float(position).
    const float angle = float(inv_freq[i]) * float(position);
    cos[i] = float(std::cos(double(angle)) * attention_factor_);
    sin[i] = float(std::sin(double(angle)) * attention_factor_);
  }
}

std::vector<double> Rope::inv_freq_for(int64_t sequence_length) const {
  // Dynamic NTK: the base grows once the sequence outgrows max_position_embeddings.
  const double factor = scaling_->factor;
  const double max_position = double(max_position_embeddings_);
  const double base =
      theta_ * std::pow(factor * double(sequence_length) / max_position - (factor - 1.0),
                        double(dim_) / double(dim_ - 2));
  return default_inv_freq(dim_, base);
}

Rope::Rotation Rope::rotation(int64_t position, int64_t sequence_length) const {
  Rotation rotation;
  this->rotation(position, sequence_length, rotation);
  return rotation;
}

void Rope::rotation(int64_t position, int64_t sequence_length, Rotation& rotation) const {
  const int64_t half = dim_ / 2;
  rotation.cos.resize(half);
  rotation.sin.resize(half);
  const bool dynamic =
      scaling_ && scaling_->type == "dynamic" && sequence_length > max_position_embeddings_;
  if (dynamic) return compute(inv_freq_for(sequence_length), position, rotation.cos.data(),
                              rotation.sin.data());
  if (position >= 0 && position < table_positions_) {
    const float* entry = table_.data() + position * 2 * half;
    std::copy_n(entry, half, rotation.cos.data());
    std::copy_n(entry + half, half, rotation.sin.data());
    return;
  }
  compute(inv_freq_, position, rotation.cos.data(), rotation.sin.data());
}

void Rope::apply(const Rotation& rotation, float* x, int64_t heads, int64_t stride) const {
  // (a + ib) * (cos + i sin) on each pair (a, b).
  kernels::rotate_pairs(x, heads, stride, rotation.cos.data(), rotation.sin.data(), dim_ / 2,
                        interleave_);
}

}  // namespace dsv3
