// vp/gemm_f32_bf16.h — a float32 activation times a bfloat16 weight, on the CPU:
//
//   C[M,N] = bf16(A)[M,K] · op(B) (+ bias[N])     A, C, bias float32; B bfloat16 bits
//
// A is rounded to bfloat16 (nearest even) once, into a temporary M·K buffer; the
// product runs through vp::gemm_bf16 (vp/gemm_bf16.h) with float32 accumulation
// and a float32 C, so every product and sum is float32 (bf16 × bf16 is exact in
// float32): the same numerics as PyTorch's bf16 matmul with a float32 output.
// trans_b: B stored [N,K] (a linear layer's weight, y = x·Wᵀ); else [K,N] (dx = dy·W).
// Paths: gemm_bf16's (AVX512-BF16 where CPUID has it, else widened to float32 and
// vp::sgemm: the same values, the order of sums aside).
// Cost: 2·M·N·K flops; M·K bf16 values of workspace besides gemm_bf16's packing.
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp {

struct GemmF32Bf16Args {
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;      // [M, K], row-major, contiguous
  const uint16_t* b = nullptr;   // [N, K] (trans_b) or [K, N], contiguous
  const float* bias = nullptr;   // [N] or null
  float* c = nullptr;            // [M, N], contiguous
};

Status gemm_f32_bf16(const GemmF32Bf16Args& args);

// dst[i] = bfloat16(src[i]) for i < n (nearest even, NaN kept and made quiet: vp::float_to_bf16),
// on the thread pool: a model's bfloat16 copy of a float32 weight (bf16 compute with float32
// masters). Cost: n roundings, 6 bytes moved per value.
void round_to_bf16(const float* src, int64_t n, uint16_t* dst);

namespace cuda {
// The same product on DEVICE pointers (cuda/gemm_f32_bf16.cu): A rounded to
// bfloat16 as it is staged in shared memory, tensor cores (WMMA 16x16x16, float32
// accumulation), bias added to the float32 result. A CPU-only build's stand-in
// returns Status::Unavailable.
Status gemm_f32_bf16(const GemmF32Bf16Args& args);
}  // namespace cuda

}  // namespace vp
