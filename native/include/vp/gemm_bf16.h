// vp/gemm_bf16.h — matrix multiply of bfloat16 inputs with float32 accumulation on the CPU.
//
//   C[M,N] = op(A) · op(B)       A, B bfloat16 (raw bits, uint16_t); C float32 or bfloat16
//
// Row-major, op() as in vp/gemm.h (trans_a: A stored [K,M]; trans_b: B stored [N,K]).
// Every product and sum is formed in float32 (bf16 × bf16 is exact in float32), so
// the result matches a float32 SGEMM of the same (bf16-valued) inputs up to the
// order of the sums; a bfloat16 C is rounded to nearest even once, at the end.
//
// Paths, chosen once per call from CPUID (vp/cpu_features.h, VP_ISA applied):
//  - AVX512-BF16 (Zen 4, Cooper Lake, Sapphire Rapids and later): packed panels and a
//    12 × 32 micro-kernel of vdpbf16ps, two k steps per instruction, half the bytes
//    of a float32 panel per k (native/ops/matmul/gemm_bf16_kernel_avx512bf16.cpp);
//  - otherwise: A and B widened to float32, then vp::sgemm (same result, no speed-up).
// AMX-BF16 tiles are not used yet.
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp {

struct GemmBf16Args {
  bool trans_a = false;
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const uint16_t* a = nullptr;
  int64_t lda = 0;
  const uint16_t* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;       // float32 C, or
  uint16_t* c16 = nullptr;  // bfloat16 C (exactly one of the two)
  int64_t ldc = 0;
  int threads = 0;          // 0 = the pool's size
  float beta = 0.0f;        // float32 C only: C = A·B + beta·C (0: C is not read)
};

Status gemm_bf16(const GemmBf16Args& args);

// Mixed precision with float32 operands (what autocast does): vp::sgemm's
// arguments and result, C = bf16(op(A)) · bf16(op(B)) + beta·C, both operands
// rounded to bfloat16 (nearest even) into per-thread buffers, the product on
// gemm_bf16 with float32 accumulation. alpha must be 1. The VideoLM's training
// step runs its products through this when its compute dtype is bfloat16
// (float32 master weights, gradients and optimizer state).
// Cost: gemm_bf16's, plus M·K + K·N roundings and as many bf16 values of workspace.
struct GemmArgs;
Status gemm_f32_via_bf16(const GemmArgs& args);

// Which path gemm_bf16 takes on this CPU: "avx512_bf16" or "float32 (widened)".
const char* gemm_bf16_path();

// bfloat16 bits <-> float32 (round to nearest even; NaN stays NaN).
inline float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace vp
