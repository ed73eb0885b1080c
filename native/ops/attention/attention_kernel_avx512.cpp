// AVX-512 build of the CPU attention kernels (attention_impl.h).
//
// Micro-tiles: 6 rows x 4 vectors (64 columns: one query block in the forward,
// one key block in the backward's score products), 8 x 3, 12 x 2 and 12 x 1:
// at most 24 accumulators + the B row + a broadcast in the 32 zmm registers.
// exp2 is a degree-6 polynomial on [-1/2, 1/2] (relative error ~1e-7, about one
// float ulp) scaled by 2^n with vscalef, which also flushes -inf and anything
// below 2^-200 to exactly 0.
// The target pragma comes after every include (see gemm_kernel_avx2.cpp).
#include <immintrin.h>

#include <cstdint>

#include "attention_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
// GCC 12's avx512fintrin.h trips -Wmaybe-uninitialized on its own helpers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace vp::detail {
namespace {

struct V {
  using T = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static constexpr int NVMAX = 4;
  // Block sizes (overridable at build time for tuning experiments).
#ifndef VP_ATT512_FWD_BK
#define VP_ATT512_FWD_BK 128
#endif
#ifndef VP_ATT512_BWD_BQ
#define VP_ATT512_BWD_BQ 64
#endif
#ifndef VP_ATT512_BWD_BK
#define VP_ATT512_BWD_BK 64
#endif
  static constexpr int FWD_BQ = 64;
  static constexpr int FWD_BK = VP_ATT512_FWD_BK;
  static constexpr int BWD_BQ = VP_ATT512_BWD_BQ;
  static constexpr int BWD_BK = VP_ATT512_BWD_BK;
#ifndef VP_ATT512_MR4
#define VP_ATT512_MR4 6
#endif
  static constexpr int mr_for(int nv) { return nv >= 4 ? VP_ATT512_MR4 : nv == 3 ? 8 : 12; }

  static inline __attribute__((always_inline)) T zero() { return _mm512_setzero_ps(); }
  static inline __attribute__((always_inline)) T set1(float x) { return _mm512_set1_ps(x); }
  static inline __attribute__((always_inline)) T load(const float* p) { return _mm512_loadu_ps(p); }
  static inline __attribute__((always_inline)) T loadm(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static inline __attribute__((always_inline)) void store(float* p, T x) { _mm512_storeu_ps(p, x); }
  static inline __attribute__((always_inline)) void storem(float* p, T x, M m) { _mm512_mask_storeu_ps(p, m, x); }
  static inline __attribute__((always_inline)) M mask(int n) {
    return n >= 16 ? static_cast<M>(0xFFFF) : static_cast<M>((1u << n) - 1u);
  }
  static inline __attribute__((always_inline)) T keep(T x, M m) { return _mm512_maskz_mov_ps(m, x); }
  static inline __attribute__((always_inline)) T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static inline __attribute__((always_inline)) T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static inline __attribute__((always_inline)) T add(T a, T b) { return _mm512_add_ps(a, b); }
  static inline __attribute__((always_inline)) T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static inline __attribute__((always_inline)) T max(T a, T b) { return _mm512_max_ps(a, b); }
  static inline __attribute__((always_inline)) float hsum(T x) { return _mm512_reduce_add_ps(x); }
  static inline __attribute__((always_inline)) T exp2(T x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-200.0f));  // also maps NaN (masked -inf - -inf) to -200
    const T n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const T f = _mm512_sub_ps(x, n);
    T y = _mm512_set1_ps(1.5469732170458883e-4f);
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.3400432653725147e-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(9.618025273084640e-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(5.550327152013779e-2f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(2.4022650718688965e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(6.931471824645996e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
  }
};

#include "attention_impl.h"

}  // namespace

AttnKernels attention_kernels_avx512() { return make_kernels(); }

}  // namespace vp::detail

#pragma GCC diagnostic pop
#pragma GCC pop_options
