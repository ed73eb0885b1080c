// AVX-512 InfoNCE row passes (see infonce_rows_impl.h), 16 lanes. Tails use
// masked loads and stores; exp's power of two is _mm512_scalef_ps.
// The target pragma comes after every include (see gemm_kernel_avx2.cpp).
#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "infonce_rows.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
// GCC 12's avx512fintrin.h builds results from _mm512_undefined_*(), which
// -Wmaybe-uninitialized flags in every caller (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace vp::detail {
namespace {

struct V {
  using R = __m512;
  static constexpr int W = 16;
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static R set1(float x) { return _mm512_set1_ps(x); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R load_tail(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store(float* p, R x) { _mm512_storeu_ps(p, x); }
  static void store_tail(float* p, R x, int n) { _mm512_mask_storeu_ps(p, mask(n), x); }
  static R keep(R x, int n, float fill) { return _mm512_mask_blend_ps(mask(n), set1(fill), x); }
  static R zero_lane(R x, int i) { return _mm512_mask_mov_ps(x, static_cast<__mmask16>(1u << i), _mm512_setzero_ps()); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R fnmadd(R a, R b, R c) { return _mm512_fnmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static float hmax(R x) {
    alignas(64) float t[16];
    _mm512_store_ps(t, x);
    float m = t[0];
    for (float v : t) m = v > m ? v : m;
    return m;
  }
  static double hsum(R x) {
    alignas(64) float t[16];
    _mm512_store_ps(t, x);
    double s = 0.0;
    for (float v : t) s += v;
    return s;
  }
  static R round(R x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static R pow2(R p, R n) { return _mm512_scalef_ps(p, n); }
  static R keep_if_ge(R v, R x, R lo) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ), v); }
};

#include "infonce_rows_impl.h"

}  // namespace

InfoNceRowKernels infonce_rows_avx512() { return rows_impl::make_row_kernels<V>(); }

}  // namespace vp::detail

#pragma GCC diagnostic pop
#pragma GCC pop_options
