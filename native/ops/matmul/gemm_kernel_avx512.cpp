// AVX-512 SGEMM micro-kernel: a 12 x 32 tile.
//
// Why 12 x 32: 24 zmm accumulators (12 rows x 2 vectors) + 2 for the B row + 1
// broadcast = 27 of the 32 zmm registers. 24 independent FMA chains hide the
// FMA latency on every current core (Zen 4 runs 512-bit FMAs as two 256-bit
// halves; Intel server cores have one or two 512-bit FMA ports), and each k
// step loads 2 vectors of B for 24 FMAs, so the loads never limit.
//
// Edge tiles (fewer valid rows or columns) run a smaller instance of the same
// template — 4 or 8 rows, 1 vector — reading the same packed panels, so small
// and ragged products do not pay for a full 12 x 32 tile of padding; their
// loads and stores are masked to the valid part.
// The target pragma comes after every include (see gemm_kernel_avx2.cpp).
#include <immintrin.h>

#include "gemm_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

namespace vp::detail {
namespace {

constexpr int MR = 12;  // packed A panel height (the stride of the A panel)
constexpr int NR = 32;  // packed B panel width (the stride of the B panel)

// R rows x V vectors of 16 columns; the panels keep their MR / NR strides.
template <int R, int V>
__attribute__((always_inline)) inline void tile(int64_t kc, const float* ap, const float* bp, float* c,
                                                int64_t ldc, float alpha, float beta, int mr, int nr) {
  __m512 acc[R][V];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    __m512 b[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) b[v] = _mm512_loadu_ps(bp + 16 * v);
    _mm_prefetch(reinterpret_cast<const char*>(bp + 8 * NR), _MM_HINT_T0);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
    }
    ap += MR;
    bp += NR;
  }

  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  if (mr == R && nr == 16 * V) {  // full tile: plain stores
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) {
        float* p = c + i * ldc + 16 * v;
        __m512 r = _mm512_mul_ps(va, acc[i][v]);
        if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_loadu_ps(p), r);
        _mm512_storeu_ps(p, r);
      }
    return;
  }
  __mmask16 mask[V];
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) {
    int cols = nr - 16 * v;
    mask[v] = cols >= 16 ? static_cast<__mmask16>(0xFFFF) : cols > 0 ? static_cast<__mmask16>((1u << cols) - 1) : 0;
  }
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    if (i >= mr) break;
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      float* p = c + i * ldc + 16 * v;
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], p), r);
      _mm512_mask_storeu_ps(p, mask[v], r);
    }
  }
}

void kernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
            float beta, int mr, int nr) {
  if (nr > 16) {
    if (mr > 8) tile<12, 2>(kc, ap, bp, c, ldc, alpha, beta, mr, nr);
    else if (mr > 4) tile<8, 2>(kc, ap, bp, c, ldc, alpha, beta, mr, nr);
    else tile<4, 2>(kc, ap, bp, c, ldc, alpha, beta, mr, nr);
  } else {
    if (mr > 8) tile<12, 1>(kc, ap, bp, c, ldc, alpha, beta, mr, nr);
    else if (mr > 4) tile<8, 1>(kc, ap, bp, c, ldc, alpha, beta, mr, nr);
    else tile<4, 1>(kc, ap, bp, c, ldc, alpha, beta, mr, nr);
  }
}

}  // namespace

GemmKernelInfo gemm_kernel_avx512() { return {kernel, MR, NR}; }

}  // namespace vp::detail

#pragma GCC pop_options
