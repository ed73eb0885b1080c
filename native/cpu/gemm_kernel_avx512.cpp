// AVX-512 SGEMM micro-kernel: a 12 x 32 tile.
//
// Why 12 x 32: 24 zmm accumulators (12 rows x 2 vectors) + 2 for the B row + 1
// broadcast = 27 of the 32 zmm registers. 24 independent FMA chains hide the
// FMA latency on every current core (Zen 4 runs 512-bit FMAs as two 256-bit
// halves; Intel server cores have one or two 512-bit FMA ports), and each k
// step loads 2 vectors of B for 24 FMAs, so the loads never limit.
// The target pragma comes after every include (see gemm_kernel_avx2.cpp).
#include <immintrin.h>

#include "gemm_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

namespace vp::detail {
namespace {

constexpr int MR = 12;
constexpr int NR = 32;

__attribute__((always_inline)) inline void store_tile(__m512 acc[MR][2], float* c, int64_t ldc,
                                                      float alpha, float beta) {
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, acc[i][0]));
      _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      __m512 c0 = _mm512_loadu_ps(c + i * ldc), c1 = _mm512_loadu_ps(c + i * ldc + 16);
      _mm512_storeu_ps(c + i * ldc, _mm512_fmadd_ps(va, acc[i][0], _mm512_mul_ps(vb, c0)));
      _mm512_storeu_ps(c + i * ldc + 16, _mm512_fmadd_ps(va, acc[i][1], _mm512_mul_ps(vb, c1)));
    }
  }
}

void kernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
            float beta, int mr, int nr) {
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
    _mm_prefetch(reinterpret_cast<const char*>(bp + 8 * NR), _MM_HINT_T0);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
      acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
    }
    ap += MR;
    bp += NR;
  }

  if (mr == MR && nr == NR) {
    store_tile(acc, c, ldc, alpha, beta);
    return;
  }
  // Edge tile: spill to a local tile, then write only the valid part.
  alignas(64) float tile[MR * NR];
  store_tile(acc, tile, NR, 1.0f, 0.0f);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float v = alpha * tile[i * NR + j];
      c[i * ldc + j] = beta == 0.0f ? v : v + beta * c[i * ldc + j];
    }
}

}  // namespace

GemmKernelInfo gemm_kernel_avx512() { return {kernel, MR, NR}; }

}  // namespace vp::detail

#pragma GCC pop_options
