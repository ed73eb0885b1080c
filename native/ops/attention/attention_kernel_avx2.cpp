// AVX2+FMA build of the CPU attention kernels (attention_impl.h).
//
// Micro-tiles: 6 rows x 2 vectors (16 columns) and 8 x 1 in the 16 ymm
// registers. exp2: the same degree-6 polynomial as the AVX-512 path, scaled by
// 2^n built in the exponent bits; inputs below -127 (and -inf, NaN) give 0.
// The target pragma comes after every include (see gemm_kernel_avx2.cpp).
#include <immintrin.h>

#include <cstdint>

#include "attention_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace vp::detail {
namespace {

struct V {
  using T = __m256;
  using M = __m256i;
  static constexpr int W = 8;
  static constexpr int NVMAX = 2;
  static constexpr int FWD_BQ = 32;
  static constexpr int FWD_BK = 128;
  static constexpr int BWD_BQ = 64;
  static constexpr int BWD_BK = 32;
  static constexpr int mr_for(int nv) { return nv >= 2 ? 6 : 8; }

  static inline __attribute__((always_inline)) T zero() { return _mm256_setzero_ps(); }
  static inline __attribute__((always_inline)) T set1(float x) { return _mm256_set1_ps(x); }
  static inline __attribute__((always_inline)) T load(const float* p) { return _mm256_loadu_ps(p); }
  static inline __attribute__((always_inline)) T loadm(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  static inline __attribute__((always_inline)) void store(float* p, T x) { _mm256_storeu_ps(p, x); }
  static inline __attribute__((always_inline)) void storem(float* p, T x, M m) { _mm256_maskstore_ps(p, m, x); }
  static inline __attribute__((always_inline)) M mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline __attribute__((always_inline)) T keep(T x, M m) { return _mm256_and_ps(x, _mm256_castsi256_ps(m)); }
  static inline __attribute__((always_inline)) T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static inline __attribute__((always_inline)) T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static inline __attribute__((always_inline)) T add(T a, T b) { return _mm256_add_ps(a, b); }
  static inline __attribute__((always_inline)) T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static inline __attribute__((always_inline)) T max(T a, T b) { return _mm256_max_ps(a, b); }
  static inline __attribute__((always_inline)) float hsum(T x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static inline __attribute__((always_inline)) T exp2(T x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-127.0f));  // -inf and NaN -> -127 -> 0 below
    const T n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const T f = _mm256_sub_ps(x, n);
    T y = _mm256_set1_ps(1.5469732170458883e-4f);
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.3400432653725147e-3f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(9.618025273084640e-3f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(5.550327152013779e-2f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(2.4022650718688965e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(6.931471824645996e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.0f));
    // 2^n for n in [-127, 0]: biased exponent n + 127 in [0, 127]; n = -127 gives +0.
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  }
};

#include "attention_impl.h"

}  // namespace

AttnKernels attention_kernels_avx2() { return make_kernels(); }

}  // namespace vp::detail

#pragma GCC pop_options
