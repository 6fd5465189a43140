// The bf16 product (BF16 weights times activations rounded to bf16) on AMX: TDPBF16PS multiplies
// a tile of 16 weight rows x 32 columns (A, loaded straight from the row-major weights, no
// repacking) by a tile of 32 columns x 16 tokens (B, the activations in AMX's pair layout, packed
// once per product by amx_pack_tokens) into 16 x 16 float sums (C): 8192 multiply-adds per
// instruction, about 13 times the vdpbf16ps rate of one core.
//
// Batch invariance, as for the vdpbf16ps kernel (avx512_bf16.cpp): TDPBF16PS computes each
// C[m][n] from row m of A and column n of B only, in an order fixed by the hardware, so an output
// out[t][r] is
//   C = 0; for c = 0, 32, 64, ...: C += TDPBF16PS(W[r][c .. c+32), x[t][c .. c+32))
// whatever the other rows and tokens of its tiles (missing tokens are zeros). Which rows run here
// depends only on the matrix (amx_bf16_rows), so a token gets the same bits alone (decode) or in
// any batch (prefill), with any thread count. TDPBF16PS treats bf16 subnormal inputs as zero and
// flushes subnormal results (DAZ/FTZ), the same for every token.

// GCC 12's AVX-512 headers: see avx512.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/simd/isa_kernels.h"

#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")

namespace dsv3::kernels::simd {
namespace {

constexpr int kTileRows = 16;     // weight rows per A / C tile
constexpr int kTileCols = 32;     // bf16 columns per A tile (16 pairs)
constexpr int kTileBytes = 1024;  // one B tile of packed activations

// Tiles 0-3: C (2 row tiles x 2 token tiles); 4-5: A; 6-7: B. All 16 rows of 64 bytes, so one
// configuration serves every product; it is loaded once per thread.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
thread_local bool t_tiles_configured = false;

void configure_tiles() {
  if (t_tiles_configured) return;
  TileConfig config;
  for (int i = 0; i < 8; ++i) {
    config.colsb[i] = 64;
    config.rows[i] = kTileRows;
  }
  _tile_loadconfig(&config);
  t_tiles_configured = true;
}

// In-register transpose of 16 x 16 floats: rows[i][j] becomes rows[j][i].
void transpose16(__m512 (&rows)[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);
  }
  __m512 u[16];
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    u[i + 1] =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    u[i + 2] = _mm512_castpd_ps(
        _mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    u[i + 3] = _mm512_castpd_ps(
        _mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // u[4q + j] holds, in each 128-bit block b, column 4b + j... of rows 4q .. 4q + 3.
  for (int i = 0; i < 16; i += 8) {
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_f32x4(u[i + j], u[i + 4 + j], 0x88);
      t[i + 4 + j] = _mm512_shuffle_f32x4(u[i + j], u[i + 4 + j], 0xdd);
    }
  }
  for (int j = 0; j < 8; ++j) {
    rows[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
    rows[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
  }
}

// Writes a C tile (sums[m][n]: weight row `row` + m, token `token` + n) to out[t][r] for the rows
// in [row_begin, row_end) and the tokens below n_tokens.
void store_tile(const float (&sums)[kTileRows][16], float* out, int64_t out_rows, int64_t row,
                int64_t row_begin, int64_t row_end, int64_t token, int64_t n_tokens) {
  __m512 columns[16];
  for (int m = 0; m < 16; ++m) columns[m] = _mm512_load_ps(sums[m]);
  transpose16(columns);
  const int64_t first = std::max<int64_t>(row_begin - row, 0);
  const int64_t last = std::min<int64_t>(row_end - row, kTileRows);
  const __mmask16 mask = __mmask16(((1u << last) - 1u) & ~((1u << first) - 1u));
  const int64_t tokens = std::min<int64_t>(n_tokens - token, 16);
  for (int64_t n = 0; n < tokens; ++n) {
    _mm512_mask_storeu_ps(out + (token + n) * out_rows + row, mask, columns[n]);
  }
}

// The locality hint of the weight prefetches: as the vdpbf16ps stream's (prefetch_locality).
template <int kLocality>
inline void prefetch_lines(const char* p, int64_t bytes) {
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, kLocality);
}

// kRowTiles x kTokenTiles C tiles: weight rows [row, row + 16 kRowTiles) times token blocks
// [block, block + kTokenTiles). With `prefetch`, the kRowTiles * 16 rows' bytes from there on are
// prefetched at the pace the tiles read their own.
template <int kRowTiles, int kTokenTiles, int kLocality>
void tile_block(const Bf16MatmulJob& job, int64_t row, int64_t block, int64_t row_begin,
                int64_t row_end, const char* prefetch) {
  const int64_t cols = job.w->cols;
  const int64_t row_bytes = cols * 2;
  const int64_t k_tiles = cols / kTileCols;
  const char* a = static_cast<const char*>(job.w->data) + row * row_bytes;
  const char* b = reinterpret_cast<const char*>(job.x_amx) + block * k_tiles * kTileBytes;
  const int64_t b_next = k_tiles * kTileBytes;  // the next token block's tiles
  constexpr int64_t kPrefetchPerTile = kRowTiles * kTileRows * kTileCols * 2;
  _tile_zero(0);
  if constexpr (kTokenTiles > 1) _tile_zero(1);
  if constexpr (kRowTiles > 1) _tile_zero(2);
  if constexpr (kRowTiles > 1 && kTokenTiles > 1) _tile_zero(3);
  for (int64_t k = 0; k < k_tiles; ++k) {
    if (prefetch != nullptr)
      prefetch_lines<kLocality>(prefetch + k * kPrefetchPerTile, kPrefetchPerTile);
    _tile_loadd(4, a + k * 64, row_bytes);
    _tile_loadd(6, b + k * kTileBytes, 64);
    if constexpr (kRowTiles > 1) _tile_loadd(5, a + kTileRows * row_bytes + k * 64, row_bytes);
    if constexpr (kTokenTiles > 1) _tile_loadd(7, b + b_next + k * kTileBytes, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (kTokenTiles > 1) _tile_dpbf16ps(1, 4, 7);
    if constexpr (kRowTiles > 1) _tile_dpbf16ps(2, 5, 6);
    if constexpr (kRowTiles > 1 && kTokenTiles > 1) _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float sums[kTileRows][16];
  const int64_t rows = job.w->rows, token = block * kAmxTokens;
  _tile_stored(0, sums, 64);
  store_tile(sums, job.out, rows, row, row_begin, row_end, token, job.n_tokens);
  if constexpr (kTokenTiles > 1) {
    _tile_stored(1, sums, 64);
    store_tile(sums, job.out, rows, row, row_begin, row_end, token + kAmxTokens, job.n_tokens);
  }
  if constexpr (kRowTiles > 1) {
    _tile_stored(2, sums, 64);
    store_tile(sums, job.out, rows, row + kTileRows, row_begin, row_end, token, job.n_tokens);
  }
  if constexpr (kRowTiles > 1 && kTokenTiles > 1) {
    _tile_stored(3, sums, 64);
    store_tile(sums, job.out, rows, row + kTileRows, row_begin, row_end, token + kAmxTokens,
               job.n_tokens);
  }
}

// Up to 16 tokens (decode), the weights streaming from memory: rows [row, row + 16 kRowTiles)
// times the one token block, each step k prefetching the 64-byte column slab kStreamAhead steps
// on, in the order the tiles will read it: in these rows, then in `next_rows` (the next rows,
// same stride) or, when null, the bytes from `next_linear` on (the thread's next range). Slabs
// stay ~16 KB ahead, in L1 until read.
constexpr int64_t kStreamAhead = 8;
template <int kRowTiles, int kLocality>
void stream_step(const Bf16MatmulJob& job, int64_t row, int64_t row_begin, int64_t row_end,
                 const char* next_rows, const char* next_linear) {
  const int64_t cols = job.w->cols;
  const int64_t row_bytes = cols * 2;
  const int64_t k_tiles = cols / kTileCols;
  constexpr int kRows = kRowTiles * kTileRows;
  const char* a = static_cast<const char*>(job.w->data) + row * row_bytes;
  const char* b = reinterpret_cast<const char*>(job.x_amx);
  auto prefetch_slab = [&](int64_t slab) {
    if (slab < k_tiles) {
      for (int i = 0; i < kRows; ++i)
        __builtin_prefetch(a + i * row_bytes + slab * 64, 0, kLocality);
    } else if (next_rows != nullptr) {
      for (int i = 0; i < kRows; ++i)
        __builtin_prefetch(next_rows + i * row_bytes + (slab - k_tiles) * 64, 0, kLocality);
    } else if (next_linear != nullptr) {
      prefetch_lines<kLocality>(next_linear + (slab - k_tiles) * kRows * 64, kRows * 64);
    }
  };
  _tile_zero(0);
  if constexpr (kRowTiles > 1) _tile_zero(2);
  for (int64_t k = 0; k < k_tiles; ++k) {
    prefetch_slab(k + kStreamAhead);
    _tile_loadd(4, a + k * 64, row_bytes);
    _tile_loadd(6, b + k * kTileBytes, 64);
    if constexpr (kRowTiles > 1) _tile_loadd(5, a + kTileRows * row_bytes + k * 64, row_bytes);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (kRowTiles > 1) _tile_dpbf16ps(2, 5, 6);
  }
  alignas(64) float sums[kTileRows][16];
  _tile_stored(0, sums, 64);
  store_tile(sums, job.out, job.w->rows, row, row_begin, row_end, 0, job.n_tokens);
  if constexpr (kRowTiles > 1) {
    _tile_stored(2, sums, 64);
    store_tile(sums, job.out, job.w->rows, row + kTileRows, row_begin, row_end, 0, job.n_tokens);
  }
}

template <int kLocality>
void stream_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  const int64_t row_bytes = job.w->cols * 2;
  const char* weights = static_cast<const char*>(job.w->data);
  const char* next = static_cast<const char*>(job.prefetch_next);
  configure_tiles();
  int64_t row = row_begin;
  for (; row + 2 * kTileRows <= row_end; row += 2 * kTileRows) {
    const bool more = row + 4 * kTileRows <= row_end;
    stream_step<2, kLocality>(job, row, row_begin, row_end,
                              more ? weights + (row + 2 * kTileRows) * row_bytes : nullptr,
                              more ? nullptr : next);
  }
  for (; row < row_end; row += kTileRows) {
    const int64_t tile_row = std::min(row, job.amx_rows - kTileRows);
    const bool more = row + 2 * kTileRows <= row_end;
    stream_step<1, kLocality>(job, tile_row, row, row_end,
                              more ? weights + (row + kTileRows) * row_bytes : nullptr,
                              more ? nullptr : next);
  }
}

// Rows [row, row + 16 kRowTiles) times every token block, in pairs of blocks; the first pair
// prefetches `prefetch` (the weights two row steps on), the others find the rows in cache.
template <int kRowTiles, int kLocality>
void row_step(const Bf16MatmulJob& job, int64_t row, int64_t row_begin, int64_t row_end,
              const char* prefetch) {
  const int64_t blocks = (job.n_tokens + kAmxTokens - 1) / kAmxTokens;
  int64_t block = 0;
  for (; block + 2 <= blocks; block += 2) {
    tile_block<kRowTiles, 2, kLocality>(job, row, block, row_begin, row_end, prefetch);
    prefetch = nullptr;
  }
  if (block < blocks)
    tile_block<kRowTiles, 1, kLocality>(job, row, block, row_begin, row_end, prefetch);
}

template <int kLocality>
void matmul_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  const int64_t row_bytes = job.w->cols * 2;
  const char* weights = static_cast<const char*>(job.w->data);
  const char* range_end = weights + row_end * row_bytes;
  // Two steps of 32 rows ahead; near row_end in the thread's next range when given.
  auto prefetch_base = [&](int64_t row) {
    return prefetch_target(weights + (row + 4 * kTileRows) * row_bytes, range_end,
                           job.prefetch_next, job.prefetch_next_bytes);
  };
  configure_tiles();
  int64_t row = row_begin;
  for (; row + 2 * kTileRows <= row_end; row += 2 * kTileRows)
    row_step<2, kLocality>(job, row, row_begin, row_end, prefetch_base(row));
  for (; row < row_end; row += kTileRows) {
    // A last partial tile is the matrix's last whole tile of AMX rows, its other rows not stored.
    const int64_t tile_row = std::min(row, job.amx_rows - kTileRows);
    row_step<1, kLocality>(job, tile_row, row, row_end, prefetch_base(row));
  }
}

}  // namespace
}  // namespace dsv3::kernels::simd

#pragma GCC pop_options

namespace dsv3::kernels::simd {

int64_t amx_bf16_rows(const WeightMatrix& w) {
  if (w.dtype != DType::BF16 || w.layout != WeightLayout::kRows || w.cols % kTileCols != 0 ||
      !amx_bf16_active())
    return 0;
  return w.rows / kTileRows * kTileRows;
}

void amx_pack_tokens(const uint16_t* x_bf16, int64_t x_stride, int64_t cols, int64_t n_tokens,
                     int64_t token_begin, int64_t token_end, uint16_t* packed) {
  // Tile (block, k) holds pair p of columns [32 k, 32 k + 32) of token 16 block + n at
  // 32-bit element 16 p + n.
  const int64_t k_tiles = cols / kTileCols;
  auto* words = reinterpret_cast<uint32_t*>(packed);
  if (token_end == n_tokens && n_tokens % kAmxTokens != 0) {
    std::memset(words + n_tokens / kAmxTokens * k_tiles * 256, 0, size_t(k_tiles) * kTileBytes);
  }
  for (int64_t t = token_begin; t < token_end; ++t) {
    const int64_t block = t / kAmxTokens, n = t % kAmxTokens;
    uint32_t* tiles = words + block * k_tiles * 256 + n;
    const uint16_t* x = x_bf16 + t * x_stride;
    for (int64_t k = 0; k < k_tiles; ++k) {
      for (int p = 0; p < 16; ++p) {
        uint32_t pair;
        std::memcpy(&pair, x + k * kTileCols + 2 * p, 4);
        tiles[k * 256 + 16 * p] = pair;
      }
    }
  }
}

void amx_bf16_matmul_rows(const Bf16MatmulJob& job, int64_t row_begin, int64_t row_end) {
  if (job.n_tokens <= kAmxTokens) {
    stream_rows<3>(job, row_begin, row_end);
  } else {
    matmul_rows<2>(job, row_begin, row_end);
  }
}

}  // namespace dsv3::kernels::simd
