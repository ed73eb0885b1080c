// Internal: the element-wise and row loops of the layer and optimizer kernels,
// one table per ISA. layers_kernels_impl.h writes them once over simd::Vec
// (core/simd.h); layers_kernel_{generic,avx2,avx512}.cpp compile it for their
// ISA. vp::active_isa() picks the table at run time.
//
// The row routines (row_max, row_sum_exp, row_scaled_exp) are the per-ISA half
// of the one row log-sum-exp (row_lse.h) that the cross-entropy, the token
// log-prob ops and the model share.
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
  // max of x (-inf for n == 0)
  float (*row_max)(const float* x, int64_t n);
  // sum of exp(scale * x - m), m >= max(scale * x) up to rounding
  float (*row_sum_exp)(const float* x, int64_t n, float scale, float m);
  // out = c * exp(scale * x - sub) (out may equal x)
  void (*row_scaled_exp)(const float* x, int64_t n, float scale, float sub, float c, float* out);
  void (*adamw)(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s);
  double (*sumsq)(const float* x, int64_t n);
  void (*add)(float* y, const float* x, int64_t n);
  void (*scale)(float* y, int64_t n, float s);
  // out = rotate(x) for `heads` heads of `head_dim` (= 2·half) floats:
  // out[i] = x[i]·c[i] − x[i+half]·s[i], out[i+half] = x[i+half]·c[i] + x[i]·s[i].
  void (*rope_row)(const float* x, const float* c, const float* s, int64_t heads, int64_t half, float* out);
  float (*exp_one)(float x);   // simd::exp of one value, for tests
  float (*exp2_one)(float x);  // simd::exp2 of one value, for tests
};

const LayerKernels& layer_kernels_generic();
const LayerKernels& layer_kernels_avx2();
const LayerKernels& layer_kernels_avx512();
// The table for vp::active_isa().
const LayerKernels& layer_kernels();

}  // namespace vp::detail
