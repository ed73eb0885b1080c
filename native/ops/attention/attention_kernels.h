// Internal: the per-ISA pieces of the CPU attention (attention_<isa>.cpp) and
// what the driver (attention.cpp) hands them.
//
// The driver validates nothing (vp::attention did), splits the work into items,
// schedules them over the thread pool and owns every buffer; an item function
// runs on one thread with its own scratch and writes only the memory its item
// owns, so no two threads ever write the same element.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vp/attention.h"

namespace vp::detail {

struct AttnFwdArgs {
  const AttentionProblem* p;
  const float* q;
  const float* k;
  const float* v;
  float* out;
  float* lse;
  // Where key j of KV head hk is: k + (hk - kv_h0)·kv_hstride + j·ldk (v alike).
  // The caller's [T, Hkv, D] rows: ldk = Hkv·D, kv_hstride = D, kv_h0 = 0; the
  // driver's head-major copy of heads kv_h0...: ldk = D, kv_hstride = totalK·D.
  int64_t ldk, kv_hstride, kv_h0;
};

struct AttnBwdArgs {
  const AttentionProblem* p;
  const float* dout;
  const float* q;
  const float* k;
  const float* v;
  const float* lse;
  const float* delta;  // [H, totalQ]: rowsum(dout * out)
  float* dk;
  float* dv;
};

struct AttnKernels {
  // Forward of query block qb (rows qb*fwd_bq ...) of sequence s, head h.
  void (*fwd_item)(const AttnFwdArgs& a, int64_t s, int64_t h, int64_t qb, float* scratch);
  // Backward of key blocks [kb0, kb1) of sequence s, KV head g: writes those
  // blocks of dk/dv and adds their dq contribution for the group's query heads
  // to dq_base (row i, head gi of the group at dq_base + i*dq_ld + gi*D).
  void (*bwd_item)(const AttnBwdArgs& a, int64_t s, int64_t g, int64_t kb0, int64_t kb1,
                   float* dq_base, int64_t dq_ld, float* scratch);
  // delta[h*totalQ + r] = sum_d dout[r,h,d] * out[r,h,d] for rows [r0, r1).
  void (*delta_rows)(const AttentionProblem& p, const float* dout, const float* out, int64_t r0,
                     int64_t r1, float* delta);
  int fwd_bq, fwd_bk;  // forward query / key block sizes
  int bwd_bq, bwd_bk;  // backward query / key block sizes
  // Scratch floats one thread needs for head dim d.
  size_t (*fwd_scratch)(int64_t d);
  size_t (*bwd_scratch)(int64_t d);
};

// The forward of finite inputs (the kernels above, over the thread pool).
using AttentionForwardFn = Status (*)(const AttentionProblem& p, const float* q, const float* k, const float* v,
                                      float* out, float* lse);
// `forward` with NaN/Inf in q, k or v propagated to every output they reach
// (attention_nonfinite.cpp); costs one scan of the inputs when all are finite.
Status attention_forward_nonfinite(const AttentionProblem& p, const float* q, const float* k, const float* v,
                                   float* out, float* lse, AttentionForwardFn forward);

AttnKernels attention_kernels_generic();
AttnKernels attention_kernels_avx2();
AttnKernels attention_kernels_avx512();

}  // namespace vp::detail
