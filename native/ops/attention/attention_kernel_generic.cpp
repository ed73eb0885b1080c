// Portable build of the CPU attention kernels (attention_impl.h): "vectors" of
// 8 floats as plain arrays, which the compiler maps to whatever SIMD the
// baseline target has (SSE2 on x86-64). exp2 is the C library's.
#include <cmath>
#include <cstdint>

#include "attention_kernels.h"

namespace vp::detail {
namespace {

struct V {
  struct T {
    float x[8];
  };
  using M = int;  // the number of valid leading lanes
  static constexpr int W = 8;
  static constexpr int NVMAX = 2;
  static constexpr int FWD_BQ = 32;
  static constexpr int FWD_BK = 64;
  static constexpr int BWD_BQ = 32;
  static constexpr int BWD_BK = 32;
  static constexpr int mr_for(int nv) { return nv >= 2 ? 4 : 6; }

  static inline T zero() { return set1(0.0f); }
  static inline T set1(float v) {
    T r;
    for (int i = 0; i < W; ++i) r.x[i] = v;
    return r;
  }
  static inline T load(const float* p) {
    T r;
    for (int i = 0; i < W; ++i) r.x[i] = p[i];
    return r;
  }
  static inline T loadm(const float* p, M m) {
    T r;
    for (int i = 0; i < W; ++i) r.x[i] = i < m ? p[i] : 0.0f;
    return r;
  }
  static inline void store(float* p, T v) {
    for (int i = 0; i < W; ++i) p[i] = v.x[i];
  }
  static inline void storem(float* p, T v, M m) {
    for (int i = 0; i < W && i < m; ++i) p[i] = v.x[i];
  }
  static inline M mask(int n) { return n; }
  static inline T keep(T v, M m) {
    for (int i = m < 0 ? 0 : m; i < W; ++i) v.x[i] = 0.0f;
    return v;
  }
  static inline T fma(T a, T b, T c) {
    for (int i = 0; i < W; ++i) c.x[i] = a.x[i] * b.x[i] + c.x[i];
    return c;
  }
  static inline T mul(T a, T b) {
    for (int i = 0; i < W; ++i) a.x[i] *= b.x[i];
    return a;
  }
  static inline T add(T a, T b) {
    for (int i = 0; i < W; ++i) a.x[i] += b.x[i];
    return a;
  }
  static inline T sub(T a, T b) {
    for (int i = 0; i < W; ++i) a.x[i] -= b.x[i];
    return a;
  }
  static inline T max(T a, T b) {
    for (int i = 0; i < W; ++i) a.x[i] = a.x[i] > b.x[i] ? a.x[i] : b.x[i];
    return a;
  }
  static inline float hsum(T a) {
    float s = 0.0f;
    for (int i = 0; i < W; ++i) s += a.x[i];
    return s;
  }
  static inline T exp2(T a) {
    for (int i = 0; i < W; ++i) a.x[i] = std::isnan(a.x[i]) ? 0.0f : std::exp2(a.x[i]);
    return a;
  }
};

#include "attention_impl.h"

}  // namespace

AttnKernels attention_kernels_generic() { return make_kernels(); }

}  // namespace vp::detail
