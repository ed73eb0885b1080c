// Internal: the SGEMM micro-kernels, one per ISA, and their tile shapes.
//
// A micro-kernel computes one MR x NR tile of C from a packed A micro-panel
// (kc steps of MR values: A[i0..i0+MR, k]) and a packed B micro-panel (kc steps
// of NR values: B[k, j0..j0+NR]):
//
//   C[0..mr, 0..nr] = alpha * (Ap · Bp) + beta * C     (beta == 0: C not read)
//
// mr <= MR and nr <= NR give the valid part of an edge tile; the packed panels
// are zero-padded, so the kernel always runs the full MR x NR product.
#pragma once

#include <cstdint>

namespace vp::detail {

using GemmMicroKernel = void (*)(int64_t kc, const float* ap, const float* bp, float* c,
                                 int64_t ldc, float alpha, float beta, int mr, int nr);

struct GemmKernelInfo {
  GemmMicroKernel fn;
  int mr, nr;
};

// Defined in gemm_kernel_<isa>.cpp, each compiled for its own ISA.
GemmKernelInfo gemm_kernel_generic();
GemmKernelInfo gemm_kernel_avx2();
GemmKernelInfo gemm_kernel_avx512();

}  // namespace vp::detail
