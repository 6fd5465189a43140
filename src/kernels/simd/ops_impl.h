// The row operations (RMSNorm, SwiGLU, softmax, dot, axpy), written once against a vector type
// V and compiled once per instruction set; see matmul_impl.h for the contract. V also provides
// sub, div, max (maxps: b where either is NaN or both are zeros), min, reduce_max, first_equal
// (the first lane where a == b, or -1), exp2_int (2^n for integral-valued n in [-126, 127]), round
// (to nearest), zero_where_less(value, a, b) (value, with 0 in the lanes where a < b),
// swap_pairs (lanes 2k and 2k + 1 exchanged) and load_duplicated (kLanes / 2 floats, each twice).
#pragma once

namespace dsv3::kernels::simd {
namespace {

// exp(x) to about 2 ulp for x in [-87, 88]; 0 below (exp(-inf) of masked scores must be 0),
// clamped above. exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 split in two
// constants for precision, exp(r) by the Cephes expf polynomial.
template <class V>
inline typename V::F vector_exp(typename V::F input) {
  using F = typename V::F;
  const F x = V::min(V::max(input, V::set1(-87.0f)), V::set1(88.0f));
  const F n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
  F r = V::fma(n, V::set1(-0.693359375f), x);
  r = V::fma(n, V::set1(2.12194440e-4f), r);
  F p = V::set1(1.9875691500e-4f);
  p = V::fma(p, r, V::set1(1.3981999507e-3f));
  p = V::fma(p, r, V::set1(8.3334519073e-3f));
  p = V::fma(p, r, V::set1(4.1665795894e-2f));
  p = V::fma(p, r, V::set1(1.6666665459e-1f));
  p = V::fma(p, r, V::set1(5.0000001201e-1f));
  const F r2 = V::mul(r, r);
  const F exp_r = V::add(V::fma(p, r2, r), V::set1(1.0f));
  return V::zero_where_less(V::mul(exp_r, V::exp2_int(n)), input, V::set1(-87.0f));
}

template <class V>
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  constexpr int L = V::kLanes;
  typename V::F sum_squares = V::zero();
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const auto xv = V::load(x + i);
    sum_squares = V::fma(xv, xv, sum_squares);
  }
  if (i < n) {
    const auto xv = V::load_partial(x + i, int(n - i));
    sum_squares = V::fma(xv, xv, sum_squares);
  }
  const double mean_square = double(V::reduce_add(sum_squares)) / double(n);
  const auto inv_rms = V::set1(float(1.0 / __builtin_sqrt(mean_square + double(eps))));
  for (i = 0; i + L <= n; i += L) {
    V::store(out + i, V::mul(V::load(weight + i), V::mul(V::load(x + i), inv_rms)));
  }
  if (i < n) {
    const int count = int(n - i);
    const auto value =
        V::mul(V::load_partial(weight + i, count), V::mul(V::load_partial(x + i, count), inv_rms));
    V::store_partial(out + i, value, count);
  }
}

template <class V>
inline typename V::F silu_times(typename V::F gate, typename V::F up) {
  const auto one = V::set1(1.0f);
  const auto sigmoid_denominator = V::add(one, vector_exp<V>(V::sub(V::zero(), gate)));
  return V::mul(V::div(gate, sigmoid_denominator), up);
}

template <class V>
void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  constexpr int L = V::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) V::store(out + i, silu_times<V>(V::load(gate + i), V::load(up + i)));
  if (i < n) {
    const int count = int(n - i);
    V::store_partial(
        out + i, silu_times<V>(V::load_partial(gate + i, count), V::load_partial(up + i, count)),
        count);
  }
}

template <class V>
inline typename V::F sigmoid_of(typename V::F x) {
  const auto one = V::set1(1.0f);
  return V::div(one, V::add(one, vector_exp<V>(V::sub(V::zero(), x))));
}

template <class V>
void sigmoid(const float* x, int64_t n, float* out) {
  constexpr int L = V::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) V::store(out + i, sigmoid_of<V>(V::load(x + i)));
  if (i < n) {
    const int count = int(n - i);
    V::store_partial(out + i, sigmoid_of<V>(V::load_partial(x + i, count)), count);
  }
}

// The numerators of a softmax: row[i] = exp(row[i] - max) in place, with the max and the sum of
// the new entries (a row of all -inf: zeros, max -inf, sum 0).
template <class V>
void softmax_numerators(float* row, int64_t n, float* row_max, float* row_sum) {
  constexpr int L = V::kLanes;
  *row_max = -__builtin_inff();
  *row_sum = 0.0f;
  if (n <= 0) return;
  auto max_vector = V::set1(-__builtin_inff());
  int64_t i = 0;
  for (; i + L <= n; i += L) max_vector = V::max(max_vector, V::load(row + i));
  float max_value = V::reduce_max(max_vector);
  for (; i < n; ++i) max_value = row[i] > max_value ? row[i] : max_value;
  if (max_value == -__builtin_inff()) {  // fully masked row: zeros, as the reference
    for (i = 0; i < n; ++i) row[i] = 0.0f;
    return;
  }
  const auto max_broadcast = V::set1(max_value);
  auto sum = V::zero();
  for (i = 0; i + L <= n; i += L) {
    const auto e = vector_exp<V>(V::sub(V::load(row + i), max_broadcast));
    V::store(row + i, e);
    sum = V::add(sum, e);
  }
  if (i < n) {
    const int count = int(n - i);
    // Lanes past n hold exp(0 - max): sum only the n stored ones.
    const auto e = vector_exp<V>(V::sub(V::load_partial(row + i, count), max_broadcast));
    V::store_partial(row + i, e, count);
    sum = V::add(sum, V::load_partial(row + i, count));
  }
  *row_max = max_value;
  *row_sum = V::reduce_add(sum);
}

template <class V>
void softmax(float* row, int64_t n) {
  constexpr int L = V::kLanes;
  float max_value, sum;
  softmax_numerators<V>(row, n, &max_value, &sum);
  if (max_value == -__builtin_inff()) return;  // fully masked (or empty): zeros already
  const auto inv_sum = V::set1(1.0f / sum);
  int64_t i = 0;
  for (; i + L <= n; i += L) V::store(row + i, V::mul(V::load(row + i), inv_sum));
  if (i < n) {
    const int count = int(n - i);
    V::store_partial(row + i, V::mul(V::load_partial(row + i, count), inv_sum), count);
  }
}

// The first index of the largest value, as argmax_reference: max(value, running) keeps the
// running maximum where the value is NaN or equal (maxps returns its second operand then), so
// the maxima are those of the reference's strict comparisons, four chains per lane; then the
// first value equal to the largest (+0 and -0 alike, as they are to the reference).
template <class V>
int64_t argmax(const float* x, int64_t n) {
  constexpr int L = V::kLanes;
  if (n <= 0 || x[0] != x[0]) return 0;
  auto m0 = V::set1(x[0]), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    m0 = V::max(V::load(x + i), m0);
    m1 = V::max(V::load(x + i + L), m1);
    m2 = V::max(V::load(x + i + 2 * L), m2);
    m3 = V::max(V::load(x + i + 3 * L), m3);
  }
  for (; i + L <= n; i += L) m0 = V::max(V::load(x + i), m0);
  float largest = V::reduce_max(V::max(V::max(m0, m1), V::max(m2, m3)));
  for (; i < n; ++i) largest = x[i] > largest ? x[i] : largest;
  const auto target = V::set1(largest);
  for (i = 0; i + L <= n; i += L) {
    const int lane = V::first_equal(V::load(x + i), target);
    if (lane >= 0) return i + lane;
  }
  for (; i < n; ++i)
    if (x[i] == largest) return i;
  return 0;  // not reached: `largest` is one of the values
}

template <class V>
float dot(const float* a, const float* b, int64_t n) {
  constexpr int L = V::kLanes;
  auto sum0 = V::zero(), sum1 = V::zero();
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    sum0 = V::fma(V::load(a + i), V::load(b + i), sum0);
    sum1 = V::fma(V::load(a + i + L), V::load(b + i + L), sum1);
  }
  for (; i + L <= n; i += L) sum0 = V::fma(V::load(a + i), V::load(b + i), sum0);
  if (i < n) {
    const int count = int(n - i);
    sum1 = V::fma(V::load_partial(a + i, count), V::load_partial(b + i, count), sum1);
  }
  return V::reduce_add(V::add(sum0, sum1));
}

template <class V>
void weighted_row_sum(const float* const* rows, const float* weights, int64_t count, int64_t n,
                      float* out) {
  constexpr int L = V::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    auto sum = V::zero();
    for (int64_t k = 0; k < count; ++k)
      sum = V::fma(V::set1(weights[k]), V::load(rows[k] + i), sum);
    V::store(out + i, sum);
  }
  if (i < n) {
    const int tail = int(n - i);
    auto sum = V::zero();
    for (int64_t k = 0; k < count; ++k)
      sum = V::fma(V::set1(weights[k]), V::load_partial(rows[k] + i, tail), sum);
    V::store_partial(out + i, sum, tail);
  }
}

template <class V>
void axpy(float alpha, const float* x, float* y, int64_t n) {
  constexpr int L = V::kLanes;
  const auto alpha_broadcast = V::set1(alpha);
  int64_t i = 0;
  for (; i + L <= n; i += L)
    V::store(y + i, V::fma(alpha_broadcast, V::load(x + i), V::load(y + i)));
  if (i < n) {
    const int count = int(n - i);
    V::store_partial(
        y + i,
        V::fma(alpha_broadcast, V::load_partial(x + i, count), V::load_partial(y + i, count)),
        count);
  }
}

// kernels::rotate_pairs: each product rounded, then one addition or subtraction, as the scalar
// form computes it. Interleaved, a vector holds kLanes / 2 pairs (a, b): its products with the
// duplicated cosines, plus the pair-swapped vector's with the duplicated sines negated in the
// even lanes (a c + b (-s) = a c - b s, b c + a s).
template <class V>
void rotate_pairs(float* x, int64_t heads, int64_t stride, const float* cos, const float* sin,
                  int64_t half, bool interleaved) {
  using F = typename V::F;
  constexpr int64_t L = V::kLanes;
  static constexpr float kAlternating[16] = {-1, 1, -1, 1, -1, 1, -1, 1,
                                             -1, 1, -1, 1, -1, 1, -1, 1};
  const F signs = V::load(kAlternating);
  for (int64_t h = 0; h < heads; ++h) {
    float* head = x + h * stride;
    int64_t i = 0;
    if (interleaved) {
      for (; i + L / 2 <= half; i += L / 2) {
        const F pairs = V::load(head + 2 * i);
        const F sines = V::mul(V::load_duplicated(sin + i), signs);
        V::store(head + 2 * i, V::add(V::mul(pairs, V::load_duplicated(cos + i)),
                                      V::mul(V::swap_pairs(pairs), sines)));
      }
      for (; i < half; ++i) {
        const float a = head[2 * i], b = head[2 * i + 1];
        head[2 * i] = a * cos[i] - b * sin[i];
        head[2 * i + 1] = a * sin[i] + b * cos[i];
      }
    } else {
      for (; i + L <= half; i += L) {
        const F a = V::load(head + i), b = V::load(head + half + i);
        const F c = V::load(cos + i), s = V::load(sin + i);
        V::store(head + i, V::sub(V::mul(a, c), V::mul(b, s)));
        V::store(head + half + i, V::add(V::mul(a, s), V::mul(b, c)));
      }
      for (; i < half; ++i) {
        const float a = head[i], b = head[half + i];
        head[i] = a * cos[i] - b * sin[i];
        head[half + i] = a * sin[i] + b * cos[i];
      }
    }
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd
