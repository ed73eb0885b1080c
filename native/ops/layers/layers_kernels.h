// Internal: the element-wise inner loops of the layer and optimizer kernels,
// one table per ISA. The same source (layers_kernels.inc) is compiled three
// times, under `#pragma GCC target` for AVX-512 and AVX2+FMA and without one
// for the generic path; the loops are written so that GCC vectorizes them
// (fixed-width lane accumulators instead of serial float reductions, and a
// polynomial exp instead of libm's, which does not vectorize without
// -ffast-math). vp::active_isa() picks the table at run time.
#pragma once

#include <cstdint>

namespace vp::detail {

struct AdamWScalars {
  float lr, beta1, beta2, eps, weight_decay;
  float bc1, bc2;       // 1 - beta1^t, 1 - beta2^t
  float grad_scale;     // gradients are multiplied by this first (clipping, averaging)
};

struct LayerKernels {
  // returns rstd; y = x * rstd * g
  float (*rmsnorm_fwd_row)(const float* x, const float* g, int64_t d, float eps, float* y);
  // dx = rstd*g*dy - rstd^3/d * <g*dy, x> * x ; dg += dy * x * rstd
  void (*rmsnorm_bwd_row)(const float* dy, const float* x, const float* g, float rstd, int64_t d,
                          float* dx, float* dg);
  void (*swiglu_fwd)(const float* g, const float* u, int64_t n, float* h);
  void (*swiglu_bwd)(const float* dh, const float* g, const float* u, int64_t n, float* dg,
                     float* du);
  float (*row_max)(const float* x, int64_t n);
  // sum of exp(x - m)
  float (*row_sumexp)(const float* x, int64_t n, float m);
  // out = exp(x - lse) * scale (out may equal x)
  void (*softmax_scaled)(const float* x, int64_t n, float lse, float scale, float* out);
  void (*adamw)(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s);
  double (*sumsq)(const float* x, int64_t n);
  void (*add)(float* y, const float* x, int64_t n);
  void (*scale)(float* y, int64_t n, float s);
  float (*exp_one)(float x);  // the polynomial exp, for tests
};

const LayerKernels& layer_kernels_generic();
const LayerKernels& layer_kernels_avx2();
const LayerKernels& layer_kernels_avx512();
// The table for vp::active_isa().
const LayerKernels& layer_kernels();

}  // namespace vp::detail
