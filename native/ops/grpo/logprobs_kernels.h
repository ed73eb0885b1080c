// Internal: the per-ISA building blocks of the token log-prob and GRPO kernels.
//
// Two kinds of routine, each compiled once per ISA (logprobs_kernel_<isa>.cpp):
//
//  * A strided GEMM micro-kernel. Unlike the SGEMM micro-kernel of
//    gemm_kernels.h it reads A and B through a k-stride, so the fused kernels
//    can feed it rows of the user's hidden/weight matrices and their own
//    row-major scratch tiles without packing them first:
//
//      C[i, j] = alpha * sum_k A(k, i) * B(k, j) + beta * C[i, j]
//      A(k, i) = a[k * lda + i]   (i < MR: MR values readable per k)
//      B(k, j) = b[k * ldb + j]   (j < nr: only the valid columns are read)
//
//    for i < mr, j < nr (mr <= MR, nr <= NR); beta == 0 writes C without
//    reading it. Rows i >= mr of A are read (so the caller keeps them
//    readable, zero-padded) but never stored. gemm_at is the same with
//    A(k, i) = a[i * lda + k]: A's rows are contiguous in k (a row-major
//    left operand read in place).
//
//  * Row routines built on a vectorized exp (about 1 ulp; exp(-inf) = 0,
//    NaN stays NaN):
//      row_max(x, n)                    max of x (-inf for n == 0)
//      row_sum_exp(x, n, s, m)             sum_j exp(s * x[j] - m), float accumulation
//      row_neg_softmax(x, n, s, lse, g, o) o[j] = -g * exp(s * x[j] - lse)
#pragma once

#include <cstdint>

namespace vp::detail {

using LpGemmFn = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb,
                          float* c, int64_t ldc, float alpha, float beta, int mr, int nr);

struct LpKernels {
  LpGemmFn gemm;
  LpGemmFn gemm_at;
  int mr, nr;
  float (*row_max)(const float* x, int64_t n);
  float (*row_sum_exp)(const float* x, int64_t n, float scale, float m);
  void (*row_neg_softmax)(const float* x, int64_t n, float scale, float lse, float g, float* out);
};

LpKernels lp_kernels_generic();
LpKernels lp_kernels_avx2();
LpKernels lp_kernels_avx512();

// The kernels of the active ISA (vp::active_isa()).
const LpKernels& lp_kernels();

}  // namespace vp::detail
