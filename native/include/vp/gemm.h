// vp/gemm.h — single-precision matrix multiply, the core's workhorse.
//
//   C[M,N] = alpha * op(A) * op(B) + beta * C
//
// Row-major throughout. op(A) is [M,K]: A is stored [M,K] (lda >= K) or, when
// trans_a, [K,M] (lda >= M). op(B) is [K,N]: B is stored [K,N] (ldb >= N) or,
// when trans_b, [N,K] (ldb >= K). When beta == 0, C is written without being
// read (so NaN garbage in C never leaks into the result).
#pragma once

#include <cstdint>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vp {

// The most rows of A that sgemm packs into one block (a thread's unit of work).
// Callers that split their own work into sgemm calls can align to it.
constexpr int64_t kSgemmRowBlock = 96;

struct GemmArgs {
  bool trans_a = false;
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float beta = 0.0f;
  float* c = nullptr;
  int64_t ldc = 0;
  // Threads to use; 0 = the pool's size. 1 runs on the calling thread only
  // (what a kernel that is already parallel over its own blocks asks for).
  int threads = 0;
};

// CPU SGEMM with packed panels and the active ISA's micro-kernel.
Status sgemm(const GemmArgs& args);

// The plain triple loop (float accumulation), for tests and as a last resort.
void sgemm_naive(const GemmArgs& args);

// Tensor-level matmul with validation: out[M,N] = op(a) @ op(b). a, b and out
// must be on the same device; CPU takes float32, CUDA float32/bfloat16/float16
// (float32 accumulation; out has a's dtype).
Status matmul(const TensorView& a, const TensorView& b, bool trans_a, bool trans_b,
              const TensorView& out);

namespace cuda {
// sgemm on device pointers (float32, exact SIMT products: no TF32), the same
// GemmArgs semantics (`threads` ignored). CPU-only builds: Status::Unavailable.
Status sgemm(const GemmArgs& args);
}  // namespace cuda

}  // namespace vp
