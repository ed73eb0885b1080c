// Portable InfoNCE row passes (see infonce_rows_impl.h): one lane, computed in
// double (a one-lane float sum over a long row would lose precision).
#include <cmath>
#include <cstdint>
#include <limits>

#include "infonce_rows.h"

namespace vp::detail {
namespace {

struct V {
  using R = double;
  static constexpr int W = 1;
  static R set1(float x) { return x; }
  static R load(const float* p) { return *p; }
  static R load_tail(const float* p, int n) { return n > 0 ? *p : 0.0; }
  static void store(float* p, R x) { *p = static_cast<float>(x); }
  static void store_tail(float* p, R x, int n) {
    if (n > 0) *p = static_cast<float>(x);
  }
  static R keep(R x, int n, float fill) { return n > 0 ? x : fill; }
  static R zero_lane(R, int) { return 0.0; }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R fmadd(R a, R b, R c) { return a * b + c; }
  static R fnmadd(R a, R b, R c) { return c - a * b; }
  static R max(R a, R b) { return a > b ? a : b; }
  static R min(R a, R b) { return a < b ? a : b; }
  static float hmax(R x) { return static_cast<float>(x); }
  static double hsum(R x) { return x; }
  static R round(R x) { return std::nearbyint(x); }
  static R pow2(R p, R n) { return std::ldexp(p, static_cast<int>(n)); }
  static R keep_if_ge(R v, R x, R lo) { return x >= lo ? v : 0.0; }
};

#include "infonce_rows_impl.h"

}  // namespace

InfoNceRowKernels infonce_rows_generic() { return rows_impl::make_row_kernels<V>(); }

}  // namespace vp::detail
