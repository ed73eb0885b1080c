// AVX-512 building blocks of the log-prob kernels (see logprobs_kernels.h):
// a 12 x 32 strided GEMM micro-kernel and the exp-based row routines.
// The target pragma comes after every include (see gemm_kernel_avx2.cpp).
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "logprobs_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
// GCC 12's masked-load intrinsics start from _mm512_undefined_ps(), which its
// own flow analysis then reports as uninitialized; the masked lanes are zeroed.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace vp::detail {
namespace {

constexpr int MR = 12;
constexpr int NR = 32;

// C = alpha * A·B + beta * C on a 12 x 32 tile (see the header for the layout).
// kAT: A(k, i) = a[i * lda + k] (rows of A contiguous in k) instead of a[k * lda + i].
template <bool kFullN, bool kAT>
__attribute__((always_inline)) inline void gemm_body(int64_t kc, const float* a, int64_t lda,
                                                     const float* b, int64_t ldb, float* c,
                                                     int64_t ldc, float alpha, float beta, int mr,
                                                     int nr) {
  const __mmask16 m0 = kFullN ? 0xFFFF : (nr >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nr) - 1));
  const __mmask16 m1 = kFullN ? 0xFFFF : (nr <= 16 ? 0 : static_cast<__mmask16>((1u << (nr - 16)) - 1));
  // C usually comes from far away (a gradient accumulated over many calls):
  // start fetching it now so it is in L1 when the tile is stored.
  for (int i = 0; i < mr; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();

  // Row pointers for kAT: rows 0-2 from a0, 3-5 from a3, ... (base + {0,1,2}·lda).
  const float* a0 = a;
  const float* a3 = a + 3 * lda;
  const float* a6 = a + 6 * lda;
  const float* a9 = a + 9 * lda;
  const int64_t l1 = lda, l2 = 2 * lda;

  for (int64_t k = 0; k < kc; ++k) {
    __m512 b0, b1;
    if (kFullN) {
      b0 = _mm512_loadu_ps(b);
      b1 = _mm512_loadu_ps(b + 16);
    } else {
      b0 = _mm512_maskz_loadu_ps(m0, b);
      b1 = _mm512_maskz_loadu_ps(m1, b + 16);
    }
    if (kAT) {
      __m512 av;
#define VP_LP_STEP(i, x)                            \
  av = _mm512_set1_ps(x);                           \
  acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);   \
  acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
      VP_LP_STEP(0, a0[k]) VP_LP_STEP(1, a0[k + l1]) VP_LP_STEP(2, a0[k + l2])
      VP_LP_STEP(3, a3[k]) VP_LP_STEP(4, a3[k + l1]) VP_LP_STEP(5, a3[k + l2])
      VP_LP_STEP(6, a6[k]) VP_LP_STEP(7, a6[k + l1]) VP_LP_STEP(8, a6[k + l2])
      VP_LP_STEP(9, a9[k]) VP_LP_STEP(10, a9[k + l1]) VP_LP_STEP(11, a9[k + l2])
#undef VP_LP_STEP
    } else {
#pragma GCC unroll 12
      for (int i = 0; i < MR; ++i) {
        const __m512 av = _mm512_set1_ps(a[i]);
        acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
      }
      a += lda;
    }
    b += ldb;
  }

  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      if (i >= mr) break;
      float* ci = c + i * ldc;
      _mm512_mask_storeu_ps(ci, m0, _mm512_mul_ps(va, acc[i][0]));
      _mm512_mask_storeu_ps(ci + 16, m1, _mm512_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      if (i >= mr) break;
      float* ci = c + i * ldc;
      const __m512 c0 = _mm512_maskz_loadu_ps(m0, ci), c1 = _mm512_maskz_loadu_ps(m1, ci + 16);
      _mm512_mask_storeu_ps(ci, m0, _mm512_fmadd_ps(va, acc[i][0], _mm512_mul_ps(vb, c0)));
      _mm512_mask_storeu_ps(ci + 16, m1, _mm512_fmadd_ps(va, acc[i][1], _mm512_mul_ps(vb, c1)));
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

// exp(x) for 16 floats: Cody-Waite range reduction and the Cephes expf
// polynomial, then 2^n by scalef (which underflows to 0 gracefully). The
// clamps keep NaN (max/min return their second operand when one is NaN).
__attribute__((always_inline)) inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  x = _mm512_min_ps(_mm512_set1_ps(88.7f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

float row_max(const float* x, int64_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  __m512 m0 = _mm512_set1_ps(ninf), m1 = m0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + j));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + j + 16));
  }
  for (; j < n; j += 16) m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(_mm512_set1_ps(ninf), tail_mask(n - j), x + j));
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

float row_sum_exp(const float* x, int64_t n, float scale, float m) {
  const __m512 vm = _mm512_set1_ps(m), vs = _mm512_set1_ps(scale);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    s0 = _mm512_add_ps(s0, exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x + j), vs, vm)));
    s1 = _mm512_add_ps(s1, exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x + j + 16), vs, vm)));
  }
  for (; j < n; j += 16) {
    const __mmask16 k = tail_mask(n - j);
    s0 = _mm512_add_ps(s0, _mm512_maskz_mov_ps(k, exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, x + j), vs, vm))));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void row_neg_softmax(const float* x, int64_t n, float scale, float lse, float g, float* out) {
  const __m512 vl = _mm512_set1_ps(lse), vg = _mm512_set1_ps(-g), vs = _mm512_set1_ps(scale);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    _mm512_storeu_ps(out + j, _mm512_mul_ps(vg, exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x + j), vs, vl))));
  if (j < n) {
    const __mmask16 k = tail_mask(n - j);
    _mm512_mask_storeu_ps(out + j, k, _mm512_mul_ps(vg, exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, x + j), vs, vl))));
  }
}

}  // namespace

LpKernels lp_kernels_avx512() { return {gemm, gemm_at, MR, NR, row_max, row_sum_exp, row_neg_softmax}; }

}  // namespace vp::detail

#pragma GCC diagnostic pop
#pragma GCC pop_options
