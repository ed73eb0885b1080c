// The AVX512-BF16 micro-kernel of vp::gemm_bf16 (see gemm_bf16_kernels.h).
//
// Tile 12 × 32: 24 zmm accumulators (12 rows × 2 vectors of 16 columns), 2 for the
// B pairs and 1 broadcast, as the float32 kernel (gemm_kernels.h). Each step takes
// one k pair: it loads 2 vectors of B pairs (32 columns × 2 k), broadcasts each
// row's A pair and issues 24 vdpbf16ps, each 16 lanes × 2 products summed into the
// float32 accumulator: twice the multiply-adds of a float32 FMA per instruction.
// Cost: kp · 24 vdpbf16ps per tile, one pass of C loads (accumulate) and stores.
#include "gemm_bf16_kernels.h"

#include <immintrin.h>

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16")

namespace vp::detail {
namespace {

template <int R, int NV>
inline __attribute__((always_inline)) void tile(int64_t kp, const uint32_t* ap, const uint32_t* bp, float* c,
                                                int64_t ldc, bool accumulate, int mr, int nr) {
  // C comes from L3 or memory (its 2048-column rows are 8 KB apart): fetch the
  // tile's lines now, so they are in L1 when it is accumulated and stored.
  for (int i = 0; i < mr; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) __builtin_prefetch(c + i * ldc + 16 * v);
  __m512 acc[R][NV];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(bp + v * 16);
    // (no software prefetch: the 64 KB B micro-panel streams from L2 on its own)
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[i]));
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], a, bv[v]);
    }
    ap += kBf16MR;
    bp += kBf16NR;
  }
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    if (i >= mr) break;
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      const int cols = nr - 16 * v;
      if (cols <= 0) break;
      const __mmask16 m = cols >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1u);
      float* pc = c + i * ldc + 16 * v;
      __m512 r = acc[i][v];
      if (accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, pc));
      _mm512_mask_storeu_ps(pc, m, r);
    }
  }
}

}  // namespace

void bf16_micro_kernel(int64_t kp, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc, bool accumulate,
                       int mr, int nr) {
  // Edge tiles: fewer rows (a third, two thirds) or one vector of columns.
  if (nr <= 16) {
    if (mr > 8) tile<12, 1>(kp, ap, bp, c, ldc, accumulate, mr, nr);
    else if (mr > 4) tile<8, 1>(kp, ap, bp, c, ldc, accumulate, mr, nr);
    else tile<4, 1>(kp, ap, bp, c, ldc, accumulate, mr, nr);
    return;
  }
  if (mr > 8) tile<12, 2>(kp, ap, bp, c, ldc, accumulate, mr, nr);
  else if (mr > 4) tile<8, 2>(kp, ap, bp, c, ldc, accumulate, mr, nr);
  else tile<4, 2>(kp, ap, bp, c, ldc, accumulate, mr, nr);
}

void bf16_round_exact(const float* src, int64_t n, uint16_t* dst) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff), quiet = _mm512_set1_epi32(0x40);
  for (int64_t j = 0; j < n; j += 16) {
    const int cols = static_cast<int>(n - j < 16 ? n - j : 16);
    const __mmask16 m = cols == 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1u);
    const __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, src + j));
    // (The zero-masked shifts and narrowing compute what _mm512_srli_epi32 and
    // _mm512_cvtepi32_epi16 do, without GCC 12's false "may be used uninitialized"
    // warning about those intrinsics' undefined source operand.)
    const __m512i hi = _mm512_maskz_srli_epi32(0xFFFF, u, 16);
    // u + 0x7fff + (bit 16 of u), then the high half: round to nearest, ties to even.
    __m512i r = _mm512_maskz_srli_epi32(0xFFFF, _mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(hi, one))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, quiet));
    _mm256_mask_storeu_epi16(dst + j, m, _mm512_maskz_cvtepi32_epi16(0xFFFF, r));
  }
}

void bf16_round_rows(const float* c, int64_t ldc, int64_t rows, int64_t n, uint16_t* c16, int64_t ldc16) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* s = c + i * ldc;
    uint16_t* d = c16 + i * ldc16;
    for (int64_t j = 0; j < n; j += 16) {
      const int cols = static_cast<int>(n - j < 16 ? n - j : 16);
      const __mmask16 m = cols == 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1u);
      // vcvtneps2bf16: round to nearest even, NaN kept as a quiet NaN.
      const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + j));
      _mm256_mask_storeu_epi16(d + j, m, (__m256i)h);
    }
  }
}

}  // namespace vp::detail
