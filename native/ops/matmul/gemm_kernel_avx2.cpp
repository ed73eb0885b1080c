// AVX2 + FMA SGEMM micro-kernel: a 6 x 16 tile.
//
// Why 6 x 16: 12 ymm accumulators (6 rows x 2 vectors) + 2 for the B row + 1
// broadcast = 15 of the 16 ymm registers, and 12 independent FMA chains cover
// the FMA latency (4 cycles) times the two FMA ports with room to spare.
// The target pragma comes after every include, so no standard-library code in
// this file is compiled for AVX2 (it could otherwise be shared with, and run
// on, a CPU that lacks it).
#include <immintrin.h>

#include "gemm_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace vp::detail {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

__attribute__((always_inline)) inline void store_tile(__m256 acc[MR][2], float* c, int64_t ldc,
                                                      float alpha, float beta) {
  const __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc[i][0]));
      _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      __m256 c0 = _mm256_loadu_ps(c + i * ldc), c1 = _mm256_loadu_ps(c + i * ldc + 8);
      _mm256_storeu_ps(c + i * ldc, _mm256_fmadd_ps(va, acc[i][0], _mm256_mul_ps(vb, c0)));
      _mm256_storeu_ps(c + i * ldc + 8, _mm256_fmadd_ps(va, acc[i][1], _mm256_mul_ps(vb, c1)));
    }
  }
}

void kernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
            float beta, int mr, int nr) {
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
    ap += MR;
    bp += NR;
  }

  if (mr == MR && nr == NR) {
    store_tile(acc, c, ldc, alpha, beta);
    return;
  }
  // Edge tile: masked loads and stores touch only the valid mr x nr part.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i k0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
  const __m256i k1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
    if (beta != 0.0f) {
      r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, k0), r0);
      r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, k1), r1);
    }
    _mm256_maskstore_ps(ci, k0, r0);
    _mm256_maskstore_ps(ci + 8, k1, r1);
  }
}

}  // namespace

GemmKernelInfo gemm_kernel_avx2() { return {kernel, MR, NR}; }

}  // namespace vp::detail

#pragma GCC pop_options
