// AVX2 + FMA building blocks of the log-prob kernels (see logprobs_kernels.h):
// a 6 x 16 strided GEMM micro-kernel and the exp-based row routines.
// The target pragma comes after every include (see gemm_kernel_avx2.cpp).
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "logprobs_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace vp::detail {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

// Lane masks for the first `n` of 8 lanes (n in 0..8).
__attribute__((always_inline)) inline __m256i lanes(int n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

// kAT: A(k, i) = a[i * lda + k] instead of a[k * lda + i].
template <bool kFullN, bool kAT>
__attribute__((always_inline)) inline void gemm_body(int64_t kc, const float* a, int64_t lda,
                                                     const float* b, int64_t ldb, float* c,
                                                     int64_t ldc, float alpha, float beta, int mr,
                                                     int nr) {
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  const __m256i k0 = lanes(nr >= 8 ? 8 : nr), k1 = lanes(nr <= 8 ? 0 : nr - 8);
  for (int i = 0; i < mr; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
  const float* a0 = a;
  const float* a3 = a + 3 * lda;
  const int64_t l1 = lda, l2 = 2 * lda;

  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0, b1;
    if (kFullN) {
      b0 = _mm256_loadu_ps(b);
      b1 = _mm256_loadu_ps(b + 8);
    } else {
      b0 = _mm256_maskload_ps(b, k0);
      b1 = _mm256_maskload_ps(b + 8, k1);
    }
    if (kAT) {
      __m256 av;
#define VP_LP_STEP(i, p)                            \
  av = _mm256_broadcast_ss(p);                      \
  acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);   \
  acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
      VP_LP_STEP(0, a0 + k) VP_LP_STEP(1, a0 + k + l1) VP_LP_STEP(2, a0 + k + l2)
      VP_LP_STEP(3, a3 + k) VP_LP_STEP(4, a3 + k + l1) VP_LP_STEP(5, a3 + k + l2)
#undef VP_LP_STEP
    } else {
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256 av = _mm256_broadcast_ss(a + i);
        acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
      }
      a += lda;
    }
    b += ldb;
  }

  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* ci = c + i * ldc;
    __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
    if (beta != 0.0f) {
      if (kFullN) {
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
      } else {
        r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, k0), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, k1), r1);
      }
    }
    if (kFullN) {
      _mm256_storeu_ps(ci, r0);
      _mm256_storeu_ps(ci + 8, r1);
    } else {
      _mm256_maskstore_ps(ci, k0, r0);
      _mm256_maskstore_ps(ci + 8, k1, r1);
    }
  }
}

void gemm(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
          int64_t ldc, float alpha, float beta, int mr, int nr) {
  if (nr == NR) gemm_body<true, false>(kc, a, lda, b, ldb, c, ldc, alpha, beta, mr, nr);
  else gemm_body<false, false>(kc, a, lda, b, ldb, c, ldc, alpha, beta, mr, nr);
}

void gemm_at(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
             int64_t ldc, float alpha, float beta, int mr, int nr) {
  if (nr == NR) gemm_body<true, true>(kc, a, lda, b, ldb, c, ldc, alpha, beta, mr, nr);
  else gemm_body<false, true>(kc, a, lda, b, ldb, c, ldc, alpha, beta, mr, nr);
}

// exp(x) for 8 floats (Cephes expf). Inputs below -87.3 give 0; NaN stays NaN.
__attribute__((always_inline)) inline __m256 exp8(__m256 x) {
  const __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_set1_ps(-87.3f), x);
  x = _mm256_min_ps(_mm256_set1_ps(88.7f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n: n is in [-126, 128]; 2^128 overflows to +inf through the product below.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256 s0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const __m256 s1 = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
  const __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, s0), s1);
  return _mm256_andnot_ps(under, e);
}

float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

float row_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  __m256 m0 = _mm256_set1_ps(m), m1 = m0;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
  }
  m = hmax8(_mm256_max_ps(m0, m1));
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

float row_sum_exp(const float* x, int64_t n, float scale, float m) {
  const __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(scale);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    s0 = _mm256_add_ps(s0, exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + j), vs, vm)));
    s1 = _mm256_add_ps(s1, exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + j + 8), vs, vm)));
  }
  for (; j < n; j += 8) {
    const __m256i k = lanes(static_cast<int>(n - j >= 8 ? 8 : n - j));
    const __m256 e = exp8(_mm256_fmsub_ps(_mm256_maskload_ps(x + j, k), vs, vm));
    s0 = _mm256_add_ps(s0, _mm256_and_ps(e, _mm256_castsi256_ps(k)));
  }
  return hsum8(_mm256_add_ps(s0, s1));
}

void row_neg_softmax(const float* x, int64_t n, float scale, float lse, float g, float* out) {
  const __m256 vl = _mm256_set1_ps(lse), vg = _mm256_set1_ps(-g), vs = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(out + j, _mm256_mul_ps(vg, exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + j), vs, vl))));
  if (j < n) {
    const __m256i k = lanes(static_cast<int>(n - j));
    _mm256_maskstore_ps(out + j, k, _mm256_mul_ps(vg, exp8(_mm256_fmsub_ps(_mm256_maskload_ps(x + j, k), vs, vl))));
  }
}

}  // namespace

LpKernels lp_kernels_avx2() { return {gemm, gemm_at, MR, NR, row_max, row_sum_exp, row_neg_softmax}; }

}  // namespace vp::detail

#pragma GCC pop_options
