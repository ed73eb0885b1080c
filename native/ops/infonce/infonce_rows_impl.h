// Internal: the InfoNCE row passes (see infonce_rows.h), written once over
// simd::Vec and compiled by each infonce_rows_<isa>.cpp (which defines
// VP_SIMD_ISA and includes this header after its other includes; core/simd.h
// sets the target).
//
// Sums run in float vector lanes over chunks of kChunk elements and are added
// up in double, so a long row keeps its precision. The exponential is
// simd::exp with NaN mapped to 0, so a NaN score adds nothing (the driver
// reports non-finite inputs itself). Each pass reads (and writes) the row once.
#include "core/simd.h"

namespace vp::detail {
namespace {

using simd::Vec;
using VT = simd::T;

constexpr int64_t kChunk = 1024;

float scale_max(float* row, int64_t m, float a, const float* rk) {
  const VT va = Vec::set1(a), ninf = Vec::set1(-__builtin_inff());
  VT mx = ninf;
  simd::for_lanes(m, [&](int64_t j, auto l) {
    VT x = Vec::mul(simd::load(row + j, l), va);
    if (rk) x = Vec::mul(x, simd::load(rk + j, l));
    simd::store(row + j, x, l);
    mx = Vec::max(mx, simd::keep(x, l, ninf));
  });
  return Vec::hmax(mx);
}

double exp_sum(float* row, int64_t m, float shift, float center, int64_t skip, bool store, double* dot) {
  const VT vs = Vec::set1(shift), vc = Vec::set1(center);
  double sum = 0.0, dsum = 0.0;
  for (int64_t c0 = 0; c0 < m; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < m ? c0 + kChunk : m;
    VT s = Vec::zero(), d = Vec::zero();
    simd::for_lanes(c1 - c0, [&](int64_t jj, auto l) {
      const int64_t j = c0 + jj;
      const VT x = simd::load(row + j, l);
      VT e = simd::keep(simd::exp<simd::kNanToZero>(Vec::sub(x, vs)), l);
      if (skip >= j && skip < j + Vec::W) {  // e[skip] = 0: lanes before it and after it kept
        const int i = static_cast<int>(skip - j);
        e = Vec::select(Vec::mask(i), e, Vec::select(Vec::mask(i + 1), Vec::zero(), e));
      }
      s = Vec::add(s, e);
      d = Vec::fma(e, Vec::sub(x, vc), d);
      if (store) simd::store(row + j, e, l);
    });
    sum += Vec::hsum_d(s);
    dsum += Vec::hsum_d(d);
  }
  if (dot) *dot = dsum;
  return sum;
}

void scale(float* row, int64_t m, float c, const float* rk) {
  const VT vc = Vec::set1(c);
  simd::for_lanes(m, [&](int64_t j, auto l) {
    VT x = Vec::mul(simd::load(row + j, l), vc);
    if (rk) x = Vec::mul(x, simd::load(rk + j, l));
    simd::store(row + j, x, l);
  });
}

}  // namespace

InfoNceRowKernels VP_SIMD_NAME(infonce_rows)() { return {scale_max, exp_sum, scale}; }

}  // namespace vp::detail
