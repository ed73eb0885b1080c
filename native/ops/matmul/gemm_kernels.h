// Internal: the GEMM micro-kernels, one set per ISA, and their tile shape.
// gemm_kernels_impl.h writes them once over simd::Vec (core/simd.h);
// gemm_kernel_<isa>.cpp compiles it with that ISA's tile:
//  - AVX-512, 8 x 48: 24 zmm accumulators (8 rows x 3 vectors) + 3 for the B
//    row + 1 broadcast = 28 of the 32 registers; 24 independent FMA chains hide
//    the FMA latency on every current core (Zen 4 runs 512-bit FMAs as two
//    256-bit halves), and each k step loads 3 vectors of B and broadcasts 8
//    values of A for 24 FMAs (11 loads; 12 x 32 needs 14, and measured 3-6 %
//    slower against oneDNN's SGEMM at 1024-2048 on Zen 4, single thread).
//  - AVX2, 6 x 16: 12 ymm accumulators + 2 for B + 1 broadcast = 15 of the 16
//    registers; 12 FMA chains cover the latency (4 cycles) times two ports.
//  - portable, 4 x 8: 8 four-wide SSE2 accumulators (after auto-vectorization)
//    fit the 16 registers with room for B and the broadcast.
//
// `packed` computes one MR x NR tile of C from a packed A micro-panel (kc steps
// of MR values: A[i0..i0+MR, k]) and a packed B micro-panel (kc steps of NR
// values: B[k, j0..j0+NR]), both zero-padded (the SGEMM of gemm_cpu.cpp):
//
//   C[0..mr, 0..nr] = alpha * (Ap · Bp) + beta * C     (beta == 0: C not read)
//
// `strided` and `strided_at` read A and B in place through a k-stride, so the
// fused log-prob kernels (ops/grpo/logprobs_cpu.cpp) can feed them rows of the
// user's matrices and their own scratch tiles without packing:
//
//   C[i, j] = alpha * sum_k A(k, i) * B(k, j) + beta * C[i, j]   i < mr, j < nr
//   A(k, i) = a[k * lda + i]  (strided_at: a[i * lda + k]; all MR rows are
//             read, so the caller keeps rows past mr readable)
//   B(k, j) = b[k * ldb + j]  (only the valid columns are read)
#pragma once

#include <cstdint>

#include "vp/cpu_features.h"

namespace vp::detail {

using GemmMicroKernel = void (*)(int64_t kc, const float* ap, const float* bp, float* c,
                                 int64_t ldc, float alpha, float beta, int mr, int nr);
using GemmStridedKernel = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb,
                                   float* c, int64_t ldc, float alpha, float beta, int mr, int nr);

struct GemmKernelInfo {
  GemmMicroKernel fn;  // packed
  GemmStridedKernel strided, strided_at;
  int mr, nr;
};

// Defined in gemm_kernel_<isa>.cpp, each compiled for its own ISA (call only
// the one the CPU supports).
GemmKernelInfo gemm_kernel_generic();
GemmKernelInfo gemm_kernel_avx2();
GemmKernelInfo gemm_kernel_avx512();

// The kernels of `isa` (an ISA that vp::active_isa() may return).
GemmKernelInfo gemm_kernel_for(Isa isa);

}  // namespace vp::detail
