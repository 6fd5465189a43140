// The bf16 attention products (kernels/attention_bf16.h): the packed layouts hold the rounded
// inputs, the fast kernels (over packed inputs, and over bf16 rows as a bf16 latent cache holds
// them) agree with the scalar references at odd sizes, and a query's results do not depend on
// the other queries of the call.
#include "kernels/attention_bf16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/attention_ops.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/ops.h"
#include "tensor/dtype.h"

namespace dsv3::kernels {
namespace {

std::vector<float> rounded(std::vector<float> values) {
  for (float& v : values) v = bf16_to_f32(f32_to_bf16(v));
  return values;
}

int64_t even(int64_t n) { return (n + 1) / 2 * 2; }

class IsaGuard {
 public:
  ~IsaGuard() { set_active_isa(isa_); }

 private:
  KernelIsa isa_ = active_isa();
};

// One problem: `n_queries` queries and `n_keys` keys and values of `dim` floats (keys and values
// with a row stride past dim), bf16 queries and packed keys and values, per-query key counts
// and probabilities (bf16 rows, zero from each count on).
struct Problem {
  int64_t dim, n_queries, n_keys, query_stride, probs_stride;
  std::vector<float> queries, keys, values, probs;
  std::vector<uint16_t> queries_bf16, packed_keys, packed_values, probs_bf16;
  std::vector<int64_t> counts;

  Problem(int64_t dim_, int64_t n_queries_, int64_t n_keys_, uint32_t seed)
      : dim(dim_), n_queries(n_queries_), n_keys(n_keys_), query_stride(even(dim_) + 2),
        probs_stride(even(n_keys_) + 4) {
    queries = random_floats(n_queries * dim, seed);
    keys = random_floats(n_keys * (dim + 3), seed + 1);
    values = random_floats(n_keys * (dim + 5), seed + 2);
    queries_bf16.assign(size_t(n_queries * query_stride), 0xffff);
    round_rows_to_bf16(queries.data(), dim, n_queries, dim, queries_bf16.data(), query_stride);
    packed_keys.assign(size_t(packed_keys_elements(n_keys, dim)), 0xffff);
    // In two parts: the first dim / 3 values, then the rest (read through another pointer).
    pack_keys_bf16(keys.data(), dim + 3, dim / 3, keys.data() + dim / 3, dim + 3, n_keys, dim,
                   packed_keys.data());
    packed_values.assign(size_t(packed_values_elements(n_keys, dim)), 0xffff);
    pack_values_bf16(values.data(), dim + 5, n_keys, dim, packed_values.data());
    for (int64_t q = 0; q < n_queries; ++q) counts.push_back((q * 37 + 11) % (n_keys + 1));
    counts[0] = n_keys;
    probs = random_floats(n_queries * n_keys, seed + 3, 0.1f);
    probs_bf16.assign(size_t(n_queries * probs_stride), 0xffff);
    for (int64_t q = 0; q < n_queries; ++q)
      round_rows_to_bf16(probs.data() + q * n_keys, n_keys, 1, counts[size_t(q)],
                         probs_bf16.data() + q * probs_stride, probs_stride);
  }
};

void expect_near(const std::vector<float>& fast, const std::vector<float>& reference,
                 double absolute, const std::string& label) {
  ASSERT_EQ(fast.size(), reference.size());
  for (size_t i = 0; i < fast.size(); ++i)
    ASSERT_LE(std::fabs(double(fast[i]) - double(reference[i])),
              1e-5 * std::fabs(double(reference[i])) + absolute)
        << label << " at " << i << ": " << fast[i] << " vs " << reference[i];
}

TEST(AttentionBf16, PackedInputsAreTheRoundedValues) {
  // The bf16 references on the packed layouts equal the float references on the rounded
  // inputs: the packing put every value where the kernels read it.
  IsaGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);  // round_rows_to_bf16 has a vector form
    for (int64_t dim : {1, 7, 64, 130}) {
      for (int64_t n_keys : {1, 16, 17, 50}) {
        const Problem p(dim, 5, n_keys, uint32_t(dim * 100 + n_keys));
        const std::string label = std::string(isa_name(isa)) + " dim=" + std::to_string(dim) +
                                  " keys=" + std::to_string(n_keys);
        std::vector<float> bf16(size_t(p.n_queries * n_keys)), f32 = bf16;
        attention_scores_bf16_reference(p.queries_bf16.data(), p.query_stride, p.n_queries,
                                        p.packed_keys.data(), n_keys, dim, 0.5f, bf16.data(),
                                        n_keys);
        attention_scores_reference(rounded(p.queries).data(), dim, p.n_queries,
                                   rounded(p.keys).data(), dim + 3, n_keys, dim, 0.5f, f32.data(),
                                   n_keys);
        expect_near(bf16, f32, 0.0, label + " scores");

        std::vector<float> sum_bf16(size_t(p.n_queries * dim)), sum_f32 = sum_bf16;
        attention_weighted_sum_bf16_reference(p.probs_bf16.data(), p.probs_stride, p.n_queries,
                                              p.counts.data(), p.packed_values.data(), dim,
                                              sum_bf16.data(), dim);
        attention_weighted_sum_reference(rounded(p.probs).data(), n_keys, p.n_queries,
                                         p.counts.data(), rounded(p.values).data(), dim + 5, dim,
                                         sum_f32.data(), dim);
        expect_near(sum_bf16, sum_f32, 0.0, label + " weighted sum");
      }
    }
  }
}

TEST(AttentionBf16, MatchesReferenceAtOddSizes) {
  IsaGuard guard;
  uint32_t seed = 100;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t dim : {1, 13, 64, 128, 192}) {
      // 8 and 6: the register tiles' queries; 48: their keys (3 blocks of 16).
      for (int64_t n_queries : {1, 3, 8, 17, 33}) {
        for (int64_t n_keys : {1, 5, 16, 47, 49, 130}) {
          const std::string label = std::string(isa_name(isa)) + " dim=" + std::to_string(dim) +
                                    " queries=" + std::to_string(n_queries) +
                                    " keys=" + std::to_string(n_keys);
          const Problem p(dim, n_queries, n_keys, seed += 4);
          const int64_t scores_stride = n_keys + 3;
          std::vector<float> fast(size_t(n_queries * scores_stride), 7.0f), reference = fast;
          attention_scores_bf16(p.queries_bf16.data(), p.query_stride, n_queries,
                                p.packed_keys.data(), n_keys, dim, 0.125f, fast.data(),
                                scores_stride);
          attention_scores_bf16_reference(p.queries_bf16.data(), p.query_stride, n_queries,
                                          p.packed_keys.data(), n_keys, dim, 0.125f,
                                          reference.data(), scores_stride);
          expect_near(fast, reference, 1e-6 * std::sqrt(double(dim)), label + " scores");

          const int64_t out_stride = dim + 1;
          std::vector<float> sum(size_t(n_queries * out_stride), 7.0f), sum_reference = sum;
          attention_weighted_sum_bf16(p.probs_bf16.data(), p.probs_stride, n_queries,
                                      p.counts.data(), p.packed_values.data(), dim, sum.data(),
                                      out_stride);
          attention_weighted_sum_bf16_reference(p.probs_bf16.data(), p.probs_stride, n_queries,
                                                p.counts.data(), p.packed_values.data(), dim,
                                                sum_reference.data(), out_stride);
          expect_near(sum, sum_reference, 1e-6 * std::sqrt(double(n_keys)),
                      label + " weighted sum");
        }
      }
    }
  }
}

// softmax_to_bf16 gives bitwise the softmax then its rounding, zero-padded, on every kernel
// set: rows of 1 to 70 scores (partial vectors), some -inf (padding), one all -inf.
TEST(AttentionBf16, SoftmaxToBf16IsTheRoundedSoftmax) {
  IsaGuard guard;
  uint32_t seed = 900;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t n : {1, 2, 15, 16, 17, 33, 70}) {
      for (int masked : {0, 1, 2}) {  // none, every third, all
        std::vector<float> scores = random_floats(n, ++seed, 8.0f);
        for (int64_t i = 0; i < n; ++i)
          if ((masked == 1 && i % 3 == 1) || masked == 2)
            scores[size_t(i)] = -std::numeric_limits<float>::infinity();
        const int64_t padded = even(n) + 2;
        std::vector<float> row = scores;
        std::vector<uint16_t> fused(size_t(padded), 0xffff), expected(size_t(padded), 0xffff);
        softmax_to_bf16(row.data(), n, fused.data(), padded);
        row = scores;
        softmax(row.data(), n);
        round_rows_to_bf16(row.data(), n, 1, n, expected.data(), padded);
        EXPECT_EQ(fused, expected) << isa_name(isa) << " n=" << n << " masked=" << masked;
      }
    }
  }
}

TEST(AttentionBf16, AQueryDoesNotDependOnTheOthers) {
  // Each query alone gives bitwise the scores and weighted sum it gets among 40 others, and a
  // query's scores do not depend on how many keys the call has.
  IsaGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    const Problem p(70, 41, 150, 9);
    std::vector<float> scores(size_t(p.n_queries * p.n_keys));
    attention_scores_bf16(p.queries_bf16.data(), p.query_stride, p.n_queries,
                          p.packed_keys.data(), p.n_keys, p.dim, 0.3f, scores.data(), p.n_keys);
    std::vector<float> sums(size_t(p.n_queries * p.dim));
    attention_weighted_sum_bf16(p.probs_bf16.data(), p.probs_stride, p.n_queries,
                                p.counts.data(), p.packed_values.data(), p.dim, sums.data(),
                                p.dim);
    for (int64_t q = 0; q < p.n_queries; ++q) {
      const int64_t some_keys = 1 + q * 3 % p.n_keys;
      std::vector<float> alone(static_cast<size_t>(some_keys)), alone_sum(static_cast<size_t>(p.dim));
      attention_scores_bf16(p.queries_bf16.data() + q * p.query_stride, p.query_stride, 1,
                            p.packed_keys.data(), some_keys, p.dim, 0.3f, alone.data(),
                            some_keys);
      EXPECT_EQ(0, std::memcmp(alone.data(), scores.data() + q * p.n_keys, alone.size() * 4))
          << isa_name(isa) << " query " << q;
      attention_weighted_sum_bf16(p.probs_bf16.data() + q * p.probs_stride, p.probs_stride, 1,
                                  &p.counts[size_t(q)], p.packed_values.data(), p.dim,
                                  alone_sum.data(), p.dim);
      EXPECT_EQ(0, std::memcmp(alone_sum.data(), sums.data() + q * p.dim, alone_sum.size() * 4))
          << isa_name(isa) << " query " << q;
    }
  }
}

// Keys and values as bf16 rows of a stride past dim (a bf16 cache's rows), with the queries and
// probabilities of a Problem.
struct RowsProblem {
  Problem p;
  int64_t row_stride;
  std::vector<uint16_t> rows;

  RowsProblem(int64_t dim, int64_t n_queries, int64_t n_keys, uint32_t seed)
      : p(dim, n_queries, n_keys, seed), row_stride(dim + 7) {
    const std::vector<float> values = random_floats(n_keys * row_stride, seed + 5);
    rows.resize(values.size());
    round_rows_to_bf16(values.data(), row_stride, n_keys, row_stride, rows.data(), row_stride);
  }
};

TEST(AttentionBf16Rows, MatchReferenceAtOddSizes) {
  IsaGuard guard;
  uint32_t seed = 300;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    // 320: the bench shape's cache rows; 31, 33: either side of the weighted sum's 32 columns.
    for (int64_t dim : {1, 13, 31, 33, 64, 320}) {
      // 16 and 32: the scores' query vectors; 8: the weighted sum's tile.
      for (int64_t n_queries : {1, 3, 8, 17, 33}) {
        // 12: the scores' key tile; odd counts leave half a pair of keys.
        for (int64_t n_keys : {1, 5, 12, 25, 130}) {
          const std::string label = std::string(isa_name(isa)) + " dim=" + std::to_string(dim) +
                                    " queries=" + std::to_string(n_queries) +
                                    " keys=" + std::to_string(n_keys);
          const RowsProblem r(dim, n_queries, n_keys, seed += 6);
          const Problem& p = r.p;
          const int64_t scores_stride = n_keys + 3;
          std::vector<float> fast(size_t(n_queries * scores_stride), 7.0f), reference = fast;
          attention_scores_bf16_rows(p.queries_bf16.data(), p.query_stride, n_queries,
                                     r.rows.data(), r.row_stride, n_keys, dim, 0.125f,
                                     fast.data(), scores_stride);
          attention_scores_bf16_rows_reference(p.queries_bf16.data(), p.query_stride, n_queries,
                                               r.rows.data(), r.row_stride, n_keys, dim, 0.125f,
                                               reference.data(), scores_stride);
          expect_near(fast, reference, 1e-6 * std::sqrt(double(dim)), label + " scores");

          const int64_t out_stride = dim + 1;
          std::vector<float> sum(size_t(n_queries * out_stride), 7.0f), sum_reference = sum;
          attention_weighted_sum_bf16_rows(p.probs_bf16.data(), p.probs_stride, n_queries,
                                           p.counts.data(), r.rows.data(), r.row_stride, dim,
                                           sum.data(), out_stride);
          attention_weighted_sum_bf16_rows_reference(p.probs_bf16.data(), p.probs_stride,
                                                     n_queries, p.counts.data(), r.rows.data(),
                                                     r.row_stride, dim, sum_reference.data(),
                                                     out_stride);
          expect_near(sum, sum_reference, 1e-6 * std::sqrt(double(n_keys)),
                      label + " weighted sum");
        }
      }
    }
  }
}

TEST(AttentionBf16Rows, AQueryDoesNotDependOnTheOthers) {
  // Each query alone gives bitwise the scores over fewer keys and the weighted sum it gets
  // among 40 others (the absorbed form's batch invariance over a bf16 cache).
  IsaGuard guard;
  for (KernelIsa isa : supported_isas()) {
    set_active_isa(isa);
    const RowsProblem r(70, 41, 151, 19);
    const Problem& p = r.p;
    std::vector<float> scores(size_t(p.n_queries * p.n_keys));
    attention_scores_bf16_rows(p.queries_bf16.data(), p.query_stride, p.n_queries, r.rows.data(),
                               r.row_stride, p.n_keys, p.dim, 0.3f, scores.data(), p.n_keys);
    std::vector<float> sums(size_t(p.n_queries * p.dim));
    attention_weighted_sum_bf16_rows(p.probs_bf16.data(), p.probs_stride, p.n_queries,
                                     p.counts.data(), r.rows.data(), r.row_stride, p.dim,
                                     sums.data(), p.dim);
    for (int64_t q = 0; q < p.n_queries; ++q) {
      const int64_t some_keys = 1 + q * 3 % p.n_keys;
      std::vector<float> alone(static_cast<size_t>(some_keys));
      std::vector<float> alone_sum(static_cast<size_t>(p.dim));
      attention_scores_bf16_rows(p.queries_bf16.data() + q * p.query_stride, p.query_stride, 1,
                                 r.rows.data(), r.row_stride, some_keys, p.dim, 0.3f,
                                 alone.data(), some_keys);
      EXPECT_EQ(0, std::memcmp(alone.data(), scores.data() + q * p.n_keys, alone.size() * 4))
          << isa_name(isa) << " query " << q;
      attention_weighted_sum_bf16_rows(p.probs_bf16.data() + q * p.probs_stride, p.probs_stride,
                                       1, &p.counts[size_t(q)], r.rows.data(), r.row_stride,
                                       p.dim, alone_sum.data(), p.dim);
      EXPECT_EQ(0, std::memcmp(alone_sum.data(), sums.data() + q * p.dim, alone_sum.size() * 4))
          << isa_name(isa) << " query " << q;
    }
  }
}

}  // namespace
}  // namespace dsv3::kernels
