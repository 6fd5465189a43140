// The vdpbf16ps kernel for BF16 weights in the kRowBlocks layout (tensor/weight_matrix.h): one
// output row per float lane, so that no dot product ends in a horizontal reduction (which costs
// the row-major kernel of avx512_bf16.cpp 5 to 20 % of a product on 1024 to 256 columns).
// Run only when cpu_has_avx512_bf16().
//
// A block holds 16 rows, one 64-byte vector per column pair of the 16 rows. Each token's pair
// of activations is broadcast to all lanes and meets it in one vdpbf16ps, so lane l accumulates
// row 16 b + l. The blocks lie in groups of two, a group's column pair as its blocks' vectors
// side by side (row_block_place): a register tile is one group (or its one block), and the
// tiles of a range read one sequential stream.
//
// Batch invariance, as for matmul (see matmul_impl.h): every output out[t][r] is
//   acc = 0 (one float lane); for p = 0, 1, ..., cols / 2 - 1:
//     acc = vdpbf16ps lane (acc, (W[r][2p], W[r][2p + 1]), (x[t][2p], x[t][2p + 1]))
// whatever the number of tokens, the tile, the column chunk or the thread. It is a different
// order from the row-major kernel's, so a matrix's layout is fixed when it is loaded and every
// product with it takes this kernel.

// GCC 12's AVX-512 headers: see avx512.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/simd/isa_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")

#include "kernels/simd/token_tiles_impl.h"

namespace dsv3::kernels::simd {
namespace {

constexpr int64_t kLanes = kRowBlockRows;  // rows per block, one per float lane
// Up to this many tokens the weights stream from memory once (decode).
constexpr int kMaxStreamTokens = 8;
// Register tile of the prefill passes: 2 blocks x 12 tokens = 24 accumulators.
constexpr int kPassBlocks = 2;
constexpr int kPassTokens = 12;
// Column pairs per chunk of a long row: a pass's chunk of activations (12 tokens x 2 KB) stays
// in L1 while every tile of the panel meets it.
constexpr int64_t kChunkPairs = 512;

// Where a tile's accumulators start and go: `partial` (kBlocks x kTokens x 16 floats) between
// the chunks of a long row, out for the last.
struct Chunk {
  int64_t pair_begin = 0;
  int64_t pair_end = 0;
  bool first = true;
  bool last = true;
  float* partial = nullptr;
};

// What a tile prefetches into L2 as it goes: the lines its steps read of the next tile
// (`ahead`, its first block's first pair, the tile's pairs ahead_pair_stride elements apart; in
// a range's first pass), and/or spread_lines lines per step of [spread, spread_end) (the next
// panel).
struct Prefetch {
  const uint16_t* ahead = nullptr;
  int64_t ahead_pair_stride = 0;
  const char* spread = nullptr;
  const char* spread_end = nullptr;
  int64_t spread_lines = 0;
  // The decode stream (a tile that is one stretch of the thread's range): every line it reads,
  // stream_ahead bytes further on, into L1; past stream_end the lines of stream_next
  // (prefetch_target).
  int64_t stream_ahead = 0;
  const char* stream_end = nullptr;
  const void* stream_next = nullptr;
  int64_t stream_next_bytes = 0;
};

// Pairs per step of a tile's loop, between its prefetches: 16 pairs are 16 lines of a block.
constexpr int64_t kStepPairs = 16;

// The activations of kTokens tokens, token t's pair p at base(t) + 4 p: token 3 i + j at
// rows[i] + j * stride bytes (j < 3), so that a step's broadcasts address 12 tokens with 4 base
// registers and one stride register instead of 12 pointers (which spilled).
template <int kTokens>
struct TokenRows {
  static constexpr int kBases = (kTokens + 2) / 3;
  const char* rows[kBases];
  int64_t stride;
  TokenRows(const uint16_t* x, int64_t x_stride, int64_t pair) {
    stride = x_stride * int64_t(sizeof(uint16_t));
    const char* first = reinterpret_cast<const char*>(x + 2 * pair);
#pragma GCC unroll 4
    for (int i = 0; i < kBases; ++i) rows[i] = first + 3 * i * stride;
  }
  __m512bh broadcast(int t) const {
    int32_t value;
    std::memcpy(&value, rows[t / 3] + (t % 3) * stride, sizeof value);
    return (__m512bh)_mm512_set1_epi32(value);
  }
  void next_pair() {
#pragma GCC unroll 4
    for (int i = 0; i < kBases; ++i) rows[i] += 4;
  }
};

// The vector of block b of a tile at column pair 0: the tile's blocks lie side by side.
constexpr int64_t kBlockVector = 2 * kLanes;  // elements

// kBlocks blocks of one group (16 kBlocks rows from matrix row `row`; `weights` is their first
// pair, the pairs pair_stride elements apart) times kTokens tokens (from `token`) over the
// column pairs of `chunk`, kStepPairs at a time; before each step it prefetches what `prefetch`
// asks for.
template <int kBlocks, int kTokens>
inline void block_tile(const Bf16MatmulJob& job, const uint16_t* weights, int64_t pair_stride,
                       int64_t row, int64_t token, const Chunk& chunk, Prefetch& prefetch) {
  __m512 acc[kBlocks][kTokens];
#pragma GCC unroll 4
  for (int b = 0; b < kBlocks; ++b)
#pragma GCC unroll 12
    for (int t = 0; t < kTokens; ++t)
      acc[b][t] = chunk.first ? _mm512_setzero_ps()
                              : _mm512_load_ps(chunk.partial + (b * kTokens + t) * kLanes);
  TokenRows<kTokens> x(job.x_bf16 + (token - job.x_first_token) * job.x_stride, job.x_stride,
                       chunk.pair_begin);
  for (int64_t step = chunk.pair_begin; step < chunk.pair_end; step += kStepPairs) {
    const int64_t step_end = std::min(chunk.pair_end, step + kStepPairs);
    if (prefetch.ahead != nullptr) {
      for (int64_t pair = step; pair < step_end; ++pair)
#pragma GCC unroll 4
        for (int b = 0; b < kBlocks; ++b)
          __builtin_prefetch(prefetch.ahead + b * kBlockVector + pair * prefetch.ahead_pair_stride,
                             0, 2);
    }
    for (int64_t line = 0; line < prefetch.spread_lines && prefetch.spread < prefetch.spread_end;
         ++line) {
      __builtin_prefetch(prefetch.spread, 0, 2);
      prefetch.spread += 64;
    }
    const uint16_t* w = weights + step * pair_stride;
    const char* stream = nullptr;
    if (prefetch.stream_ahead > 0)
      stream = prefetch_target(reinterpret_cast<const char*>(w) + prefetch.stream_ahead,
                               prefetch.stream_end, prefetch.stream_next,
                               prefetch.stream_next_bytes);
    for (int64_t pair = step; pair < step_end; ++pair, w += pair_stride) {
      if (stream != nullptr) {
#pragma GCC unroll 4
        for (int b = 0; b < kBlocks; ++b) __builtin_prefetch(stream + b * 64, 0, 3);
        stream += kBlocks * 64;
      }
      __m512bh weight[kBlocks];
#pragma GCC unroll 4
      for (int b = 0; b < kBlocks; ++b)
        weight[b] = (__m512bh)_mm512_loadu_si512(w + b * kBlockVector);
#pragma GCC unroll 12
      for (int t = 0; t < kTokens; ++t) {
        const __m512bh xv = x.broadcast(t);
#pragma GCC unroll 4
        for (int b = 0; b < kBlocks; ++b) acc[b][t] = _mm512_dpbf16_ps(acc[b][t], weight[b], xv);
      }
      x.next_pair();
    }
  }
  if (!chunk.last) {
#pragma GCC unroll 4
    for (int b = 0; b < kBlocks; ++b)
#pragma GCC unroll 12
      for (int t = 0; t < kTokens; ++t)
        _mm512_store_ps(chunk.partial + (b * kTokens + t) * kLanes, acc[b][t]);
    return;
  }
  const int64_t out_stride = job.out_stride != 0 ? job.out_stride : job.w->rows;
  float* out = job.out + token * out_stride + row;
#pragma GCC unroll 4
  for (int b = 0; b < kBlocks; ++b)
#pragma GCC unroll 12
    for (int t = 0; t < kTokens; ++t) _mm512_storeu_ps(out + t * out_stride + b * kLanes, acc[b][t]);
}

// Calls tile(std::integral_constant<int, k>(), first block) over blocks [begin, end) in tiles of
// at most kBlocks (a divisor of kRowGroupBlocks) that never leave their group.
template <int kBlocks, class Tile>
inline void for_block_tiles(int64_t begin, int64_t end, Tile&& tile) {
  static_assert(kRowGroupBlocks % kBlocks == 0);
  int64_t block = begin;
  while (block < end) {
    const int64_t tile_end = std::min(end, (block / kBlocks + 1) * kBlocks);
    if (tile_end - block == kBlocks) {
      tile(std::integral_constant<int, kBlocks>(), block);
    } else {
      with_token_count<kBlocks>(tile_end - block, [&](auto blocks) { tile(blocks, block); });
    }
    block = tile_end;
  }
}

// How far ahead the decode stream prefetches each line into L1 (running on into the thread's
// next rows past its range): DSV3_STREAM_PREFETCH bytes, by default 0 (off, the hardware
// prefetchers alone). On a quiet host that drew more than about 60 GB/s, 4 KB ahead brought an
// lm_head from 0.88 to 0.96 of a plain read alternated with it (BM_DecodeVsRead), expert products
// from 0.85 to 0.90, attention projections from 0.76 to 0.84, but a whole bench-shape decode only
// from 83.8 to 85.1 % of its roofline (at 77-79 GB/s). When the host gives 30-55 GB/s (its usual
// state since), the prefetches cost more than they bring: decode steps alternated in one process
// ran 4-8 % slower with 4 KB ahead than without (and 2 KB ahead the same), lm_head 0.82-0.99 of
// the read against 0.90-1.02. Prefetching only the next range's first 4 KB measured the same as
// none.
int64_t stream_prefetch_bytes() {
  static const int64_t bytes = [] {
    const char* value = std::getenv("DSV3_STREAM_PREFETCH");
    return value ? std::atoll(value) : int64_t(0);
  }();
  return bytes;
}

// Decode: rows [row_begin, row_end) for kTokens tokens, the weights streamed from memory once,
// a group per tile: the range is one sequential stream (BM_DecodeMoeBf16 on one core: 38 GB/s,
// against 34 with tiles of 4 blocks in 4 streams before the groups; BM_StreamRead 37). Two
// accumulator chains per token are enough to keep up.
template <int kTokens>
void stream_blocks(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  constexpr int kBlocks = kRowGroupBlocks;
  const int64_t rows = job.w->rows, cols = job.w->cols;
  const auto* weights = static_cast<const uint16_t*>(job.w->data);
  Prefetch stream;
  stream.stream_ahead = stream_prefetch_bytes();
  stream.stream_end = reinterpret_cast<const char*>(weights + row_end * cols);
  stream.stream_next = job.prefetch_next;
  stream.stream_next_bytes = job.prefetch_next_bytes;
  const Chunk whole{0, cols / 2, true, true, nullptr};
  for_block_tiles<kBlocks>(row_begin / kLanes, row_end / kLanes, [&](auto blocks, int64_t block) {
    const RowBlockPlace place = row_block_place(block, rows, cols);
    block_tile<decltype(blocks)::value, kTokens>(job, weights + place.first, place.pair_stride,
                                                 block * kLanes, 0, whole, stream);
  });
}

// Prefill: a panel of rows stays in L2 while every pass of up to 12 tokens goes over it in
// tiles of two blocks, long rows in chunks of columns (each pass's chunk of activations stays in
// L1, the accumulators wait in a per-thread buffer). The range's first panel is prefetched one
// tile ahead during its first pass; every next panel (the next rows of the range, then
// job.prefetch_next) spread over the later passes of the one before it.
void gemm_blocks(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  const int64_t rows = job.w->rows, cols = job.w->cols, pairs = cols / 2;
  const int64_t last_block = rows / kLanes - 1;
  const int64_t row_bytes = cols * int64_t(sizeof(uint16_t));
  const auto* weights = static_cast<const uint16_t*>(job.w->data);
  const char* bytes = reinterpret_cast<const char*>(weights);
  const int64_t panel_rows = std::max<int64_t>(kRowGroupRows, job.panel_rows);
  const int64_t chunks = (pairs + kChunkPairs - 1) / kChunkPairs;
  const int64_t chunk_pairs = (pairs + chunks - 1) / chunks;
  const int64_t passes = (job.n_tokens + kPassTokens - 1) / kPassTokens;
  float* partial = chunks > 1 ? thread_scratch_floats((panel_rows / kLanes) * kPassTokens * kLanes)
                              : nullptr;
  for (int64_t row0 = row_begin; row0 < row_end; row0 += panel_rows) {
    const int64_t row1 = std::min(row_end, row0 + panel_rows);
    const int64_t block0 = row0 / kLanes, block1 = row1 / kLanes;
    const int64_t tiles = (block1 - block0 + kPassBlocks - 1) / kPassBlocks;
    Prefetch spread;
    if (row1 < row_end) {
      spread.spread = bytes + row1 * row_bytes;
      spread.spread_end = spread.spread + std::min(panel_rows, row_end - row1) * row_bytes;
    } else if (job.prefetch_next != nullptr) {
      spread.spread = static_cast<const char*>(job.prefetch_next);
      spread.spread_end = spread.spread + std::min((row1 - row0) * row_bytes, job.prefetch_next_bytes);
    }
    // Evenly over the steps of the later passes' tiles.
    const int64_t later_steps =
        std::max<int64_t>((passes - 1) * tiles * ((pairs + kStepPairs - 1) / kStepPairs), 1);
    spread.spread_lines = ((spread.spread_end - spread.spread) / 64 + later_steps - 1) / later_steps;
    Prefetch first_pass;
    for_token_tiles<kPassTokens>(job.n_tokens, [&](int64_t pass, int64_t token, auto tokens) {
      constexpr int kTokens = decltype(tokens)::value;
      Prefetch none;
      Prefetch& prefetch = pass == 0 ? (row0 == row_begin ? first_pass : none) : spread;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        Chunk columns{chunk * chunk_pairs, std::min(pairs, (chunk + 1) * chunk_pairs), chunk == 0,
                      chunk + 1 == chunks, nullptr};
        for_block_tiles<kPassBlocks>(block0, block1, [&](auto blocks, int64_t block) {
          constexpr int kTile = decltype(blocks)::value;
          const RowBlockPlace place = row_block_place(block, rows, cols);
          if (&prefetch == &first_pass) {
            const RowBlockPlace next =
                row_block_place(std::min<int64_t>(block + kTile, last_block), rows, cols);
            first_pass.ahead = weights + next.first;
            first_pass.ahead_pair_stride = next.pair_stride;
          }
          if (partial != nullptr)
            columns.partial = partial + (block - block0) * kPassTokens * kLanes;
          block_tile<kTile, kTokens>(job, weights + place.first, place.pair_stride, block * kLanes,
                                     token, columns, prefetch);
        });
      }
    });
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd

#pragma GCC pop_options

namespace dsv3::kernels::simd {

void avx512_bf16_row_blocks_matmul_rows(const Bf16MatmulJob& job, int64_t row_begin,
                                        int64_t row_end) {
  if (row_begin >= row_end) return;
  if (job.n_tokens <= kMaxStreamTokens) {
    with_token_count<kMaxStreamTokens>(job.n_tokens, [&](auto tokens) {
      stream_blocks<decltype(tokens)::value>(job, row_begin, row_end);
    });
    return;
  }
  gemm_blocks(job, row_begin, row_end);
}

}  // namespace dsv3::kernels::simd
