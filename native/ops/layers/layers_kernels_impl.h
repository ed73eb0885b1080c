// Internal: the element-wise and row loops of the layer kernels (see
// layers_kernels.h), written once over simd::Vec and compiled by each
// layers_kernel_<isa>.cpp (which defines VP_SIMD_ISA and includes this header
// after its other includes; core/simd.h sets the target).
//
// Every loop is one pass over its row(s) in whole vectors plus one masked tail;
// sums of squares and dot products accumulate in two float vectors, added up
// in double (simd::sum). Each costs O(n) with the exponential (simd::exp,
// about 12 vector operations) as the only non-trivial arithmetic.
#include "core/simd.h"

namespace vp::detail {
namespace {

using simd::Vec;
using VT = simd::T;

VP_SIMD_INLINE VT sigmoid(VT x) {
  const VT one = Vec::set1(1.0f);
  return Vec::div(one, Vec::add(one, simd::exp(Vec::sub(Vec::zero(), x))));
}

float k_exp_one(float x) {
  float out[Vec::W];
  Vec::store(out, simd::exp(Vec::set1(x)));
  return out[0];
}

float k_exp2_one(float x) {
  float out[Vec::W];
  Vec::store(out, simd::exp2(Vec::set1(x)));
  return out[0];
}

double k_sumsq(const float* x, int64_t n) {
  return simd::sum(n, [&](int64_t j, auto l) {
    const VT v = simd::load(x + j, l);
    return Vec::mul(v, v);
  });
}

float k_rmsnorm_fwd_row(const float* x, const float* g, int64_t d, float eps, float* y) {
  const double ss = k_sumsq(x, d);
  const float rstd = static_cast<float>(1.0 / __builtin_sqrt(ss / static_cast<double>(d) + eps));
  const VT vr = Vec::set1(rstd);
  simd::for_lanes(d, [&](int64_t j, auto l) {
    simd::store(y + j, Vec::mul(Vec::mul(simd::load(x + j, l), vr), simd::load(g + j, l)), l);
  });
  return rstd;
}

void k_rmsnorm_bwd_row(const float* dy, const float* x, const float* g, float rstd, int64_t d, float* dx,
                       float* dg) {
  const double dot = simd::sum(d, [&](int64_t j, auto l) {
    return Vec::mul(Vec::mul(simd::load(g + j, l), simd::load(dy + j, l)), simd::load(x + j, l));
  });
  const float c = static_cast<float>(static_cast<double>(rstd) * rstd * rstd * dot / static_cast<double>(d));
  const VT vr = Vec::set1(rstd), vc = Vec::set1(c);
  simd::for_lanes(d, [&](int64_t j, auto l) {
    const VT vdy = simd::load(dy + j, l), vx = simd::load(x + j, l);
    simd::store(dx + j, Vec::sub(Vec::mul(Vec::mul(vr, simd::load(g + j, l)), vdy), Vec::mul(vc, vx)), l);
    if (dg) simd::store(dg + j, Vec::add(simd::load(dg + j, l), Vec::mul(Vec::mul(vdy, vx), vr)), l);
  });
}

void k_swiglu_fwd(const float* g, const float* u, int64_t n, float* h) {
  simd::for_lanes(n, [&](int64_t j, auto l) {
    const VT vg = simd::load(g + j, l);
    simd::store(h + j, Vec::mul(Vec::mul(vg, sigmoid(vg)), simd::load(u + j, l)), l);
  });
}

void k_swiglu_bwd(const float* dh, const float* g, const float* u, int64_t n, float* dg, float* du) {
  const VT one = Vec::set1(1.0f);
  simd::for_lanes(n, [&](int64_t j, auto l) {
    const VT vg = simd::load(g + j, l), vu = simd::load(u + j, l), vdh = simd::load(dh + j, l);
    const VT s = sigmoid(vg);
    simd::store(du + j, Vec::mul(vdh, Vec::mul(vg, s)), l);
    // dg = dh·u·s·(1 + g·(1 − s))
    const VT t = Vec::add(one, Vec::mul(vg, Vec::sub(one, s)));
    simd::store(dg + j, Vec::mul(Vec::mul(Vec::mul(vdh, vu), s), t), l);
  });
}

float k_row_max(const float* x, int64_t n) {
  const VT ninf = Vec::set1(-__builtin_inff());
  VT m0 = ninf, m1 = ninf;
  int64_t j = 0;
  for (; j + 2 * Vec::W <= n; j += 2 * Vec::W) {
    m0 = Vec::max(m0, Vec::load(x + j));
    m1 = Vec::max(m1, Vec::load(x + j + Vec::W));
  }
  for (; j < n; j += Vec::W) {
    const auto m = Vec::mask(static_cast<int>(n - j));
    m0 = Vec::max(m0, Vec::select(m, Vec::loadm(x + j, m), ninf));
  }
  return Vec::hmax(Vec::max(m0, m1));
}

// Also prefetches the kPrefetchAhead floats after x[n) (a row's next chunk, row_lse.cpp):
// this pass is compute-bound on exp from L1 and the next chunk's max pass would
// otherwise wait on memory alone; the prefetch overlaps the two. (A prefetch past
// the end of the buffer is harmless: it never faults.)
constexpr int64_t kPrefetchAhead = 2048;
float k_row_sum_exp(const float* x, int64_t n, float scale, float m) {
  const VT vs = Vec::set1(scale), vm = Vec::set1(-m);
  const int64_t stride = 64 / sizeof(float);  // one prefetch per cache line
  const int64_t per_lane = stride > Vec::W ? stride / Vec::W : 1;
  int64_t next = 0;
  return static_cast<float>(simd::sum(n, [&](int64_t j, auto l) {
    if (next < kPrefetchAhead && j % (Vec::W * per_lane) == 0) {
      __builtin_prefetch(x + n + next);
      next += stride;
    }
    return simd::keep(simd::exp<simd::kNonPositive>(Vec::fma(simd::load(x + j, l), vs, vm)), l);
  }));
}

void k_row_scaled_exp(const float* x, int64_t n, float scale, float sub, float c, float* out) {
  const VT vs = Vec::set1(scale), vm = Vec::set1(-sub), vc = Vec::set1(c);
  simd::for_lanes(n, [&](int64_t j, auto l) {
    simd::store(out + j, Vec::mul(vc, simd::exp(Vec::fma(simd::load(x + j, l), vs, vm))), l);
  });
}

void k_adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s) {
  const VT b1 = Vec::set1(s.beta1), b2 = Vec::set1(s.beta2);
  const VT omb1 = Vec::set1(1.0f - s.beta1), omb2 = Vec::set1(1.0f - s.beta2);
  const VT decay = Vec::set1(1.0f - s.lr * s.weight_decay);
  const VT step = Vec::set1(s.lr / s.bc1);
  const VT inv_sqrt_bc2 = Vec::set1(1.0f / __builtin_sqrtf(s.bc2));
  const VT eps = Vec::set1(s.eps), gs = Vec::set1(s.grad_scale);
  simd::for_lanes(n, [&](int64_t j, auto l) {
    const VT gi = Vec::mul(simd::load(g + j, l), gs);
    const VT mi = Vec::add(Vec::mul(b1, simd::load(m + j, l)), Vec::mul(omb1, gi));
    const VT vi = Vec::add(Vec::mul(b2, simd::load(v + j, l)), Vec::mul(Vec::mul(omb2, gi), gi));
    simd::store(m + j, mi, l);
    simd::store(v + j, vi, l);
    const VT den = Vec::add(Vec::mul(Vec::sqrt(vi), inv_sqrt_bc2), eps);
    simd::store(p + j, Vec::sub(Vec::mul(simd::load(p + j, l), decay), Vec::div(Vec::mul(step, mi), den)), l);
  });
}

void k_add(float* y, const float* x, int64_t n) {
  simd::for_lanes(n, [&](int64_t j, auto l) { simd::store(y + j, Vec::add(simd::load(y + j, l), simd::load(x + j, l)), l); });
}

void k_scale(float* y, int64_t n, float s) {
  const VT vs = Vec::set1(s);
  simd::for_lanes(n, [&](int64_t j, auto l) { simd::store(y + j, Vec::mul(simd::load(y + j, l), vs), l); });
}

void k_rope_row(const float* x, const float* c, const float* s, int64_t heads, int64_t half, float* out) {
  for (int64_t h = 0; h < heads; ++h) {
    const float* xi = x + h * 2 * half;
    float* o = out + h * 2 * half;
    simd::for_lanes(half, [&](int64_t i, auto l) {
      const VT x1 = simd::load(xi + i, l), x2 = simd::load(xi + half + i, l);
      const VT vc = simd::load(c + i, l), vs = simd::load(s + i, l);
      simd::store(o + i, Vec::fnma(x2, vs, Vec::mul(x1, vc)), l);
      simd::store(o + half + i, Vec::fma(x1, vs, Vec::mul(x2, vc)), l);
    });
  }
}

const LayerKernels kTable = {k_rmsnorm_fwd_row, k_rmsnorm_bwd_row, k_swiglu_fwd, k_swiglu_bwd, k_row_max,
                             k_row_sum_exp,     k_row_scaled_exp,  k_adamw,      k_sumsq,      k_add,
                             k_scale,           k_rope_row,        k_exp_one,    k_exp2_one};

}  // namespace

const LayerKernels& VP_SIMD_NAME(layer_kernels)() { return kTable; }

}  // namespace vp::detail
