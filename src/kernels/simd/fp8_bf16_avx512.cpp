// The kernel of kernels::matmul for FP8 weights (e4m3 with block scales, the official
// DeepSeek-V3 layout) with bf16 activations (MatmulKernel::kFp8Stream / kFp8Panel), on
// vdpbf16ps like the BF16 weights: twice the float FMA rate that the float FP8 path gets.
//
// Every e4m3 value, subnormals included, is a normal bf16 number, so the weights are widened
// exactly. The block scale rides on the activations instead: for output row r (scale row
// rb = r / block_rows), the product multiplies the row's e4m3 values with
//   xs[c] = bf16(x[t][c] * block_scale[rb][c / block_cols])   (float product, round to even)
// as the BF16 kernel's canonical dot product (avx512_bf16.cpp): the same lanes, order and
// reduction, whatever the number of tokens or threads. The scaled activations cost one
// rounding per column and scale row, against block_rows multiply-adds per column; a product
// with the scales folded into bf16 weights (DeepSeek's fp8_cast_bf16) would round every
// weight instead.
//
// The rows go in units inside one scale row (for_fp8_units). For few tokens (decode) the BF16
// kernel's stream tiles read the e4m3 codes in place and widen them in registers; for many, a
// unit's rows are widened once into a per-thread bf16 panel (the reads from memory prefetched
// during the previous unit) that stays in L2 while every token passes over it.

// GCC 12's AVX-512 headers: see avx512.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "kernels/matmul_path.h"
#include "kernels/simd/isa_kernels.h"

namespace dsv3::kernels::simd {
namespace {

// Per-thread buffers of the units (defined outside the target region, so no std code is
// compiled for it): the widened rows, the scaled activations of every token for the last scale
// row (unit_activations) and those of the current pass (pass_activations).
enum class Fp8Buffer { kRows, kUnitActivations, kPassActivations };
uint16_t* fp8_buffer(Fp8Buffer which, int64_t elements);

// Which scaled activations the kUnitActivations buffer holds: per thread.
struct UnitActivationsKey {
  const uint16_t* rows = nullptr;  // where they lie (a grown buffer moves)
  uint64_t epoch = 0;
  const float* x = nullptr;
  const void* weights = nullptr;
  int64_t scale_row = -1;
};
UnitActivationsKey& unit_activations_key();

}  // namespace
}  // namespace dsv3::kernels::simd

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")

#include "kernels/simd/fp8_bf16_avx512_impl.h"
#include "kernels/simd/round_bf16_avx512_impl.h"

namespace dsv3::kernels::simd {
namespace {

// Bytes the widening reads ahead of itself (prefetched into L1).
constexpr int64_t kWidenPrefetchBytes = 4096;

// Rows [first, first + rows) of job.w's codes -> bf16 rows of cols values at `out` (cols
// apart). Prefetches kWidenPrefetchBytes ahead, past `range_end` into the thread's next
// bytes (job.prefetch_next).
void widen_rows(const Fp8MatmulJob& job, int64_t first, int64_t rows, const char* range_end,
                uint16_t* out) {
  const int64_t cols = job.w->cols;
  const uint8_t* codes = static_cast<const uint8_t*>(job.w->data) + first * cols;
  const int64_t n = rows * cols;
  int64_t i = 0;
  // Whole rows are contiguous: the unit is one stretch of n codes.
  for (; i + 64 <= n; i += 64) {
    __builtin_prefetch(prefetch_target(reinterpret_cast<const char*>(codes) + i +
                                           kWidenPrefetchBytes,
                                       range_end, job.prefetch_next, job.prefetch_next_bytes),
                       0, 3);
    const __m512i both = _mm512_loadu_si512(codes + i);
    _mm512_storeu_si512(out + i, fp8_to_bf16(_mm512_castsi512_si256(both)));
    _mm512_storeu_si512(out + i + 32, fp8_to_bf16(_mm512_extracti64x4_epi64(both, 1)));
  }
  for (; i < n; i += 32) {
    const int64_t count = n - i < 32 ? n - i : 32;
    const __mmask32 mask = count == 32 ? ~__mmask32(0) : __mmask32((1u << count) - 1u);
    _mm512_mask_storeu_epi16(out + i, mask, fp8_to_bf16(_mm256_maskz_loadu_epi8(mask, codes + i)));
  }
}

// Token t's activations times scale row `scale_row`'s block scales, rounded to bf16.
void scale_activations(const Fp8MatmulJob& job, int64_t t, int64_t scale_row, uint16_t* out) {
  const WeightMatrix& w = *job.w;
  const float* x = job.x + (job.x_rows != nullptr ? job.x_rows[t] : t) * w.cols;
  const float* scales = w.block_scale + scale_row * w.scale_cols;
  for (int64_t c0 = 0; c0 < w.cols; c0 += w.block_cols) {
    const int64_t c1 = w.cols - c0 < w.block_cols ? w.cols : c0 + w.block_cols;
    const __m512 scale = _mm512_set1_ps(scales[c0 / w.block_cols]);
    for (int64_t c = c0; c < c1; c += 16) {
      const __mmask16 mask = c1 - c >= 16 ? __mmask16(0xffff) : __mmask16((1u << (c1 - c)) - 1u);
      const __m512 scaled = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + c), scale);
      _mm256_mask_storeu_epi16(out + c, mask, round_to_bf16(scaled));
    }
  }
}

// The pass_activations of a unit's BF16 job (many tokens).
struct PassContext {
  const Fp8MatmulJob* job;
  int64_t scale_row;
};
const uint16_t* pass_activations(const void* context, int64_t token, int64_t count) {
  const PassContext& pass = *static_cast<const PassContext*>(context);
  uint16_t* rows = fp8_buffer(Fp8Buffer::kPassActivations, count * pass.job->x_stride);
  for (int64_t i = 0; i < count; ++i)
    scale_activations(*pass.job, token + i, pass.scale_row, rows + i * pass.job->x_stride);
  return rows;
}

// The scaled activations of every token for scale row `scale_row`, kept per thread while the
// next units of the same call stay in that scale row (few tokens, or long rows).
const uint16_t* unit_activations(const Fp8MatmulJob& job, int64_t scale_row) {
  uint16_t* rows = fp8_buffer(Fp8Buffer::kUnitActivations, job.n_tokens * job.x_stride);
  UnitActivationsKey& key = unit_activations_key();
  if (key.rows != rows || key.epoch != job.epoch || key.x != job.x ||
      key.weights != job.w->data || key.scale_row != scale_row) {
    for (int64_t t = 0; t < job.n_tokens; ++t)
      scale_activations(job, t, scale_row, rows + t * job.x_stride);
    key = {rows, job.epoch, job.x, job.w->data, scale_row};
  }
  return rows;
}

}  // namespace

void avx512_fp8_matmul_rows(const Fp8MatmulJob& job, int64_t row_begin, int64_t row_end) {
  const WeightMatrix& w = *job.w;
  const char* range_end = static_cast<const char*>(w.data) + row_end * w.cols;
  for_fp8_units(w, row_begin, row_end, job.unit_rows, [&](int64_t first, int64_t end) {
    const int64_t rows = end - first, scale_row = first / w.block_rows;
    // The thread's next codes: the next unit's, or after the range job.prefetch_next.
    const char* next = static_cast<const char*>(w.data) + end * w.cols;
    const void* prefetch_next = end < row_end ? next : job.prefetch_next;
    const int64_t prefetch_next_bytes = end < row_end ? range_end - next : job.prefetch_next_bytes;
    Bf16MatmulJob unit;
    unit.x_stride = job.x_stride;
    unit.n_tokens = job.n_tokens;
    unit.prefetch_next = prefetch_next;
    unit.prefetch_next_bytes = prefetch_next_bytes;
    if (job.n_tokens <= kMaxStreamTokens) {
      // Few tokens: the stream tiles read the codes in place and widen them in registers.
      unit.w = &w;
      unit.out = job.out;
      unit.x_bf16 = unit_activations(job, scale_row);
      avx512_bf16_matmul_rows(unit, first, end);
      return;
    }
    // Many: the unit widened once into a panel that every token passes over.
    uint16_t* widened = fp8_buffer(Fp8Buffer::kRows, rows * w.cols);
    widen_rows(job, first, rows, range_end, widened);
    WeightMatrix view;
    view.dtype = DType::BF16;
    view.data = widened;
    view.rows = rows;
    view.cols = w.cols;
    const PassContext context{&job, scale_row};
    unit.w = &view;
    unit.out = job.out + first;
    unit.out_stride = w.rows;
    unit.panel_rows = rows;
    if (job.unit_rows < w.block_rows) {
      // Long rows: a scale row takes several units, which share its scaled activations (each
      // scaling them anew cost more than their products at 7168 columns).
      unit.x_bf16 = unit_activations(job, scale_row);
    } else {
      // Each pass scales its tokens' activations as it starts, into L1.
      unit.pass_activations = pass_activations;
      unit.pass_context = &context;
    }
    avx512_bf16_matmul_rows(unit, 0, rows);
  });
}

}  // namespace dsv3::kernels::simd

#pragma GCC pop_options

namespace dsv3::kernels::simd {
namespace {

uint16_t* fp8_buffer(Fp8Buffer which, int64_t elements) {
  thread_local std::vector<uint16_t> buffers[3];
  std::vector<uint16_t>& buffer = buffers[int(which)];
  constexpr int64_t kSlack = 32;  // to a 64-byte boundary
  if (int64_t(buffer.size()) < elements + kSlack) buffer.resize(size_t(elements + kSlack));
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - address % 64) % 64) / sizeof(uint16_t);
}

UnitActivationsKey& unit_activations_key() {
  thread_local UnitActivationsKey key;
  return key;
}

}  // namespace
}  // namespace dsv3::kernels::simd
