// Internal: the AVX512-BF16 half of vp::gemm_bf16 (vp/gemm_bf16.h), compiled for
// that ISA in gemm_bf16_kernel_avx512bf16.cpp; gemm_bf16_cpu.cpp calls it only
// where CPUID reports avx512_bf16.
//
// Panels hold k in pairs: one uint32 = the bf16 values of k = 2p and 2p + 1 (low
// half first; an odd K's last pair has a zero high half). A micro-panel is
// kp × MR such pairs (rows i0..i0+MR of op(A)), a B micro-panel kp × NR (columns).
#pragma once

#include <cstdint>

namespace vp::detail {

constexpr int kBf16MR = 12, kBf16NR = 32;

// C[0..mr, 0..nr] (+)= Ap · Bp over kp pairs (accumulate: add to C, else overwrite).
void bf16_micro_kernel(int64_t kp, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc,
                       bool accumulate, int mr, int nr);

// dst[i] = vp::float_to_bf16(src[i]) for i < n, bit for bit (nearest even, subnormals
// kept, NaN made quiet), 16 at a time in integer arithmetic (vcvtneps2bf16 would
// flush subnormals).
void bf16_round_exact(const float* src, int64_t n, uint16_t* dst);

// c16[i, j] = round(c[i, j]) for `rows` rows of n (bf16 round to nearest even).
void bf16_round_rows(const float* c, int64_t ldc, int64_t rows, int64_t n, uint16_t* c16, int64_t ldc16);

}  // namespace vp::detail
