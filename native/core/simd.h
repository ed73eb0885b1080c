// Internal: the one vocabulary of the per-ISA CPU kernels. A per-ISA file
// (foo_<isa>.cpp) includes what it needs, defines VP_SIMD_ISA (512: AVX-512F,
// 2: AVX2 + FMA, 0: portable) and includes its family's *_impl.h, which
// includes this header first. This header then includes <cstdint> and
// <immintrin.h> and sets `#pragma GCC target(...)` for that ISA: so it comes
// after every other include of the file, and nothing is included after it
// (docs/architecture.md). It defines, in an anonymous namespace (so no function
// compiled for one ISA is ever shared with a file compiled for another):
//
//   simd::Vec      T (register), M (lane mask), W (lanes);
//                  zero, set1, load, store, loadm/storem (masked: lanes outside
//                  the mask read as 0, are not written), mask(n) (the first n
//                  lanes), select(m, a, b) (a in m, b elsewhere), keep(x, m)
//                  (0 outside m); add, sub, mul, div, fma(a, b, c) = a·b + c,
//                  fnma(a, b, c) = c − a·b, max, min (x86 semantics: the second
//                  operand when either is NaN), sqrt, round (to nearest even);
//                  hsum (float), hsum_d (double), hmax; scale2(p, n) = p·2^n.
//   simd::for_lanes, simd::sum   a row in whole vectors and one masked tail;
//                  simd::load/store/keep take the lanes (Full{} or a mask).
//   simd::exp2, simd::exp   the one vectorized exponential (below).
//   VP_SIMD_NAME(f)         f_generic, f_avx2 or f_avx512: the name of the
//                  file's entry point (its table of kernels).
//
// exp2(x) = 2^n · P(f), n = round(x), f = x − n in [−1/2, 1/2], P a degree-6
// polynomial (relative error about 1e-7, a float ulp); exp(x) reduces
// x = n·ln 2 + r in two steps (Cody–Waite, exact without an FMA), then f = r·log2 e.
// About 12 vector operations each. Inputs are clamped to [kLo, kHi] first: 2^kLo
// is exactly 0 after scaling (so −inf and deep underflow give +0), 2^kHi is +inf.
// NaN stays NaN, or gives 0 with kNanToZero (masked scores, where −inf − −inf
// arises); kNonPositive leaves the upper clamp out (x − max of a row). Results
// are correct to about 2e-7 from 2^-126 to 2^127.5; on AVX2 and the portable
// path x ≥ 127.5 (exp: x ≥ 88.37) already gives +inf.
#pragma once

#ifndef VP_SIMD_ISA
#error "define VP_SIMD_ISA (0, 2 or 512) before including core/simd.h"
#endif

#include <cstdint>
#if VP_SIMD_ISA != 0
#include <immintrin.h>
#endif

// The target: after every include of the file, for the rest of it.
#if VP_SIMD_ISA == 512
#pragma GCC target("avx512f,avx2,fma")
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which its flow
// analysis then reports as uninitialized in every caller (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define VP_SIMD_NAME(f) f##_avx512
#elif VP_SIMD_ISA == 2
#pragma GCC target("avx2,fma")
#define VP_SIMD_NAME(f) f##_avx2
#elif VP_SIMD_ISA == 0
#define VP_SIMD_NAME(f) f##_generic
#else
#error "VP_SIMD_ISA must be 0, 2 or 512"
#endif

#define VP_SIMD_INLINE inline __attribute__((always_inline))

namespace vp::simd {
namespace {

#if VP_SIMD_ISA == 512

struct Vec {
  using T = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static constexpr float kLo = -151.0f, kHi = 129.0f;  // scalef underflows to 0 and overflows to inf

  static VP_SIMD_INLINE T zero() { return _mm512_setzero_ps(); }
  static VP_SIMD_INLINE T set1(float x) { return _mm512_set1_ps(x); }
  static VP_SIMD_INLINE T load(const float* p) { return _mm512_loadu_ps(p); }
  static VP_SIMD_INLINE void store(float* p, T x) { _mm512_storeu_ps(p, x); }
  static VP_SIMD_INLINE M mask(int n) {
    return n >= 16 ? static_cast<M>(0xFFFF) : n <= 0 ? static_cast<M>(0) : static_cast<M>((1u << n) - 1u);
  }
  static VP_SIMD_INLINE T loadm(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static VP_SIMD_INLINE void storem(float* p, T x, M m) { _mm512_mask_storeu_ps(p, m, x); }
  static VP_SIMD_INLINE T select(M m, T a, T b) { return _mm512_mask_blend_ps(m, b, a); }
  static VP_SIMD_INLINE T keep(T x, M m) { return _mm512_maskz_mov_ps(m, x); }
  static VP_SIMD_INLINE T add(T a, T b) { return _mm512_add_ps(a, b); }
  static VP_SIMD_INLINE T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static VP_SIMD_INLINE T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static VP_SIMD_INLINE T div(T a, T b) { return _mm512_div_ps(a, b); }
  static VP_SIMD_INLINE T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static VP_SIMD_INLINE T fnma(T a, T b, T c) { return _mm512_fnmadd_ps(a, b, c); }
  static VP_SIMD_INLINE T max(T a, T b) { return _mm512_max_ps(a, b); }
  static VP_SIMD_INLINE T min(T a, T b) { return _mm512_min_ps(a, b); }
  static VP_SIMD_INLINE T sqrt(T x) { return _mm512_sqrt_ps(x); }
  static VP_SIMD_INLINE T round(T x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static VP_SIMD_INLINE float hsum(T x) { return _mm512_reduce_add_ps(x); }
  static VP_SIMD_INLINE double hsum_d(T x) {
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
  }
  static VP_SIMD_INLINE float hmax(T x) { return _mm512_reduce_max_ps(x); }
  static VP_SIMD_INLINE T scale2(T p, T n) { return _mm512_scalef_ps(p, n); }
};

#elif VP_SIMD_ISA == 2

struct Vec {
  using T = __m256;
  using M = __m256i;
  static constexpr int W = 8;
  static constexpr float kLo = -127.0f, kHi = 128.0f;  // biased exponents 0 (+0) and 255 (+inf)

  static VP_SIMD_INLINE T zero() { return _mm256_setzero_ps(); }
  static VP_SIMD_INLINE T set1(float x) { return _mm256_set1_ps(x); }
  static VP_SIMD_INLINE T load(const float* p) { return _mm256_loadu_ps(p); }
  static VP_SIMD_INLINE void store(float* p, T x) { _mm256_storeu_ps(p, x); }
  static VP_SIMD_INLINE M mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static VP_SIMD_INLINE T loadm(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  static VP_SIMD_INLINE void storem(float* p, T x, M m) { _mm256_maskstore_ps(p, m, x); }
  static VP_SIMD_INLINE T select(M m, T a, T b) { return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m)); }
  static VP_SIMD_INLINE T keep(T x, M m) { return _mm256_and_ps(x, _mm256_castsi256_ps(m)); }
  static VP_SIMD_INLINE T add(T a, T b) { return _mm256_add_ps(a, b); }
  static VP_SIMD_INLINE T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static VP_SIMD_INLINE T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static VP_SIMD_INLINE T div(T a, T b) { return _mm256_div_ps(a, b); }
  static VP_SIMD_INLINE T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static VP_SIMD_INLINE T fnma(T a, T b, T c) { return _mm256_fnmadd_ps(a, b, c); }
  static VP_SIMD_INLINE T max(T a, T b) { return _mm256_max_ps(a, b); }
  static VP_SIMD_INLINE T min(T a, T b) { return _mm256_min_ps(a, b); }
  static VP_SIMD_INLINE T sqrt(T x) { return _mm256_sqrt_ps(x); }
  static VP_SIMD_INLINE T round(T x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static VP_SIMD_INLINE float hsum(T x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static VP_SIMD_INLINE double hsum_d(T x) {
    const __m256d s = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    h = _mm_add_sd(h, _mm_unpackhi_pd(h, h));
    return _mm_cvtsd_f64(h);
  }
  static VP_SIMD_INLINE float hmax(T x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  // n in [kLo, kHi]: 2^n built in the exponent bits (n = −127 gives +0, n = 128 +inf).
  static VP_SIMD_INLINE T scale2(T p, T n) {
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
};

#else

// Portable: "registers" of 8 floats as plain arrays, which the compiler maps to
// the baseline SIMD (SSE2 on x86-64); a mask is the number of leading lanes.
struct Vec {
  struct T {
    float x[8];
  };
  using M = int;
  static constexpr int W = 8;
  static constexpr float kLo = -127.0f, kHi = 128.0f;

  template <class F>
  static VP_SIMD_INLINE T map(F f) {
    T r;
    for (int i = 0; i < W; ++i) r.x[i] = f(i);
    return r;
  }
  static VP_SIMD_INLINE T zero() { return set1(0.0f); }
  static VP_SIMD_INLINE T set1(float v) { return map([&](int) { return v; }); }
  static VP_SIMD_INLINE T load(const float* p) { return map([&](int i) { return p[i]; }); }
  static VP_SIMD_INLINE void store(float* p, T v) {
    for (int i = 0; i < W; ++i) p[i] = v.x[i];
  }
  static VP_SIMD_INLINE M mask(int n) { return n; }
  static VP_SIMD_INLINE T loadm(const float* p, M m) { return map([&](int i) { return i < m ? p[i] : 0.0f; }); }
  static VP_SIMD_INLINE void storem(float* p, T v, M m) {
    for (int i = 0; i < W && i < m; ++i) p[i] = v.x[i];
  }
  static VP_SIMD_INLINE T select(M m, T a, T b) { return map([&](int i) { return i < m ? a.x[i] : b.x[i]; }); }
  static VP_SIMD_INLINE T keep(T v, M m) { return select(m, v, zero()); }
  static VP_SIMD_INLINE T add(T a, T b) { return map([&](int i) { return a.x[i] + b.x[i]; }); }
  static VP_SIMD_INLINE T sub(T a, T b) { return map([&](int i) { return a.x[i] - b.x[i]; }); }
  static VP_SIMD_INLINE T mul(T a, T b) { return map([&](int i) { return a.x[i] * b.x[i]; }); }
  static VP_SIMD_INLINE T div(T a, T b) { return map([&](int i) { return a.x[i] / b.x[i]; }); }
  static VP_SIMD_INLINE T fma(T a, T b, T c) { return map([&](int i) { return a.x[i] * b.x[i] + c.x[i]; }); }
  static VP_SIMD_INLINE T fnma(T a, T b, T c) { return map([&](int i) { return c.x[i] - a.x[i] * b.x[i]; }); }
  static VP_SIMD_INLINE T max(T a, T b) { return map([&](int i) { return a.x[i] > b.x[i] ? a.x[i] : b.x[i]; }); }
  static VP_SIMD_INLINE T min(T a, T b) { return map([&](int i) { return a.x[i] < b.x[i] ? a.x[i] : b.x[i]; }); }
  static VP_SIMD_INLINE T sqrt(T a) { return map([&](int i) { return __builtin_sqrtf(a.x[i]); }); }
  // Adding and subtracting 1.5·2^23 rounds to nearest even (|x| < 2^22; NaN stays NaN).
  static VP_SIMD_INLINE T round(T a) {
    return map([&](int i) { return (a.x[i] + 12582912.0f) - 12582912.0f; });
  }
  static VP_SIMD_INLINE float hsum(T a) {
    float s = 0.0f;
    for (int i = 0; i < W; ++i) s += a.x[i];
    return s;
  }
  static VP_SIMD_INLINE double hsum_d(T a) {
    double s = 0.0;
    for (int i = 0; i < W; ++i) s += a.x[i];
    return s;
  }
  static VP_SIMD_INLINE float hmax(T a) {
    float m = a.x[0];
    for (int i = 1; i < W; ++i) m = m > a.x[i] ? m : a.x[i];
    return m;
  }
  static VP_SIMD_INLINE T scale2(T p, T n) {
    return map([&](int i) {
      const int k = n.x[i] == n.x[i] ? static_cast<int>(n.x[i]) : 0;  // NaN: p is NaN already
      const unsigned bits = static_cast<unsigned>(k + 127) << 23;
      return p.x[i] * __builtin_bit_cast(float, bits);
    });
  }
};

#endif

using T = Vec::T;
using M = Vec::M;

// ---- loops over a row ---------------------------------------------------------
// A loop body takes (j, lanes): lanes is Full{} for a whole vector and the mask
// of the valid lanes for the last, partial one; load/store/keep pick the plain
// or the masked form from it.
struct Full {};
VP_SIMD_INLINE T load(const float* p, Full) { return Vec::load(p); }
VP_SIMD_INLINE T load(const float* p, M m) { return Vec::loadm(p, m); }
VP_SIMD_INLINE void store(float* p, T x, Full) { Vec::store(p, x); }
VP_SIMD_INLINE void store(float* p, T x, M m) { Vec::storem(p, x, m); }
VP_SIMD_INLINE T keep(T x, Full) { return x; }
VP_SIMD_INLINE T keep(T x, M m) { return Vec::keep(x, m); }
// x in the lanes, `other` outside them
VP_SIMD_INLINE T keep(T x, Full, T) { return x; }
VP_SIMD_INLINE T keep(T x, M m, T other) { return Vec::select(m, x, other); }

// body(j, lanes) for j = 0, W, 2W, ... < n.
template <class F>
VP_SIMD_INLINE void for_lanes(int64_t n, F body) {
  int64_t j = 0;
  for (; j + Vec::W <= n; j += Vec::W) body(j, Full{});
  if (j < n) body(j, Vec::mask(static_cast<int>(n - j)));
}

// Σ_j of the vectors term(j, lanes) (lanes outside the row must be 0), in two
// float accumulators added up in double at the end.
template <class F>
VP_SIMD_INLINE double sum(int64_t n, F term) {
  T a0 = Vec::zero(), a1 = Vec::zero();
  int64_t j = 0;
  for (; j + 2 * Vec::W <= n; j += 2 * Vec::W) {
    a0 = Vec::add(a0, term(j, Full{}));
    a1 = Vec::add(a1, term(j + Vec::W, Full{}));
  }
  if (j + Vec::W <= n) {
    a0 = Vec::add(a0, term(j, Full{}));
    j += Vec::W;
  }
  if (j < n) a1 = Vec::add(a1, term(j, Vec::mask(static_cast<int>(n - j))));
  return Vec::hsum_d(a0) + Vec::hsum_d(a1);
}

// ---- the exponential -------------------------------------------------------------
// Flags: kNanToZero: NaN gives 0 instead of NaN. kNonPositive: the caller's x is
// <= 0 up to rounding (a softmax's x − max), so the upper clamp is left out
// (one operation less; x above a few units would then be wrong).
constexpr unsigned kNanToZero = 1, kNonPositive = 2;

// 2^f for f in [-1/2, 1/2] (degree 6, relative error ~1e-7).
VP_SIMD_INLINE T exp2_poly(T f) {
  T y = Vec::set1(1.5469732170458883e-4f);
  y = Vec::fma(y, f, Vec::set1(1.3400432653725147e-3f));
  y = Vec::fma(y, f, Vec::set1(9.618025273084640e-3f));
  y = Vec::fma(y, f, Vec::set1(5.550327152013779e-2f));
  y = Vec::fma(y, f, Vec::set1(2.4022650718688965e-1f));
  y = Vec::fma(y, f, Vec::set1(6.931471824645996e-1f));
  return Vec::fma(y, f, Vec::set1(1.0f));
}

// x clamped to [lo, hi] as the flags say (max/min return their second operand
// when either is NaN, so the operand order decides what NaN becomes).
template <unsigned kFlags>
VP_SIMD_INLINE T clamp(T x, float lo, float hi) {
  x = (kFlags & kNanToZero) ? Vec::max(x, Vec::set1(lo)) : Vec::max(Vec::set1(lo), x);
  return (kFlags & kNonPositive) ? x : Vec::min(Vec::set1(hi), x);
}

template <unsigned kFlags = 0>
VP_SIMD_INLINE T exp2(T x) {
  x = clamp<kFlags>(x, Vec::kLo, Vec::kHi);
  const T n = Vec::round(x);
  return Vec::scale2(exp2_poly(Vec::sub(x, n)), n);
}

template <unsigned kFlags = 0>
VP_SIMD_INLINE T exp(T x) {
  constexpr float kLog2e = 1.44269504088896341f;
  x = clamp<kFlags>(x, Vec::kLo / kLog2e, Vec::kHi / kLog2e);
  const T n = Vec::round(Vec::mul(x, Vec::set1(kLog2e)));
  // r = x − n·ln 2 with ln 2 = 0.693359375 − 2.12194440e-4 (n·0.693359375 is exact)
  T r = Vec::fnma(n, Vec::set1(0.693359375f), x);
  r = Vec::fnma(n, Vec::set1(-2.12194440e-4f), r);
  return Vec::scale2(exp2_poly(Vec::mul(r, Vec::set1(kLog2e))), n);
}

}  // namespace
}  // namespace vp::simd
