// AVX2 + FMA InfoNCE row passes (see infonce_rows_impl.h), 8 lanes. Tails use
// maskload/maskstore; exp's power of two is built in the exponent bits.
// The target pragma comes after every include (see gemm_kernel_avx2.cpp).
#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "infonce_rows.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace vp::detail {
namespace {

struct V {
  using R = __m256;
  static constexpr int W = 8;
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static R set1(float x) { return _mm256_set1_ps(x); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static R load_tail(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  static void store(float* p, R x) { _mm256_storeu_ps(p, x); }
  static void store_tail(float* p, R x, int n) { _mm256_maskstore_ps(p, mask(n), x); }
  static R keep(R x, int n, float fill) { return _mm256_blendv_ps(set1(fill), x, _mm256_castsi256_ps(mask(n))); }
  static R zero_lane(R x, int i) {
    const __m256i hit = _mm256_cmpeq_epi32(_mm256_set1_epi32(i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_andnot_ps(_mm256_castsi256_ps(hit), x);
  }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R fnmadd(R a, R b, R c) { return _mm256_fnmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static float hmax(R x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static double hsum(R x) {
    const __m256d s = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)),
                                    _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    h = _mm_add_sd(h, _mm_unpackhi_pd(h, h));
    return _mm_cvtsd_f64(h);
  }
  static R round(R x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R pow2(R p, R n) {  // n in [-126, 127] (exp clamps its argument): built in the exponent bits
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  static R keep_if_ge(R v, R x, R lo) { return _mm256_and_ps(_mm256_cmp_ps(x, lo, _CMP_GE_OQ), v); }
};

#include "infonce_rows_impl.h"

}  // namespace

InfoNceRowKernels infonce_rows_avx2() { return rows_impl::make_row_kernels<V>(); }

}  // namespace vp::detail

#pragma GCC pop_options
