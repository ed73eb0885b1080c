// Internal to cuda/logprobs.cu and cuda/grpo.cu: dtype helpers, a tiled GEMM
// with float32 accumulation (tensor cores through WMMA for bfloat16/float16,
// CUDA cores for float32), and the chunked linear log-prob engine.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "host_checks.h"
#include "scratch_pool.h"
#include "vp/status.h"
#include "vp/tensor.h"

namespace vp::cuda::detail {

inline Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status::Internal(std::string(what) + ": " + cudaGetErrorString(e));
}

// Invalid (naming fn) when x blocks exceed the grid's x limit (2^31 - 1).
inline Status grid_status(const char* fn, int64_t x) {
  const std::string p = host::grid_problem(fn, x);
  return p.empty() ? Status::Ok() : Status::Invalid(p);
}

#define VP_CUDA_TRY(expr, what) VP_RETURN_IF_ERROR(::vp::cuda::detail::cuda_status((expr), (what)))

// Scratch device memory leased from the pool (cuda/scratch_pool.h) until scope exit.
class DeviceScratch {
 public:
  Status alloc(size_t bytes) {
    unsigned char* p = nullptr;
    VP_RETURN_IF_ERROR(lease_.get(&p, bytes ? bytes : 4, "log-prob scratch"));
    p_ = p;
    return Status::Ok();
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  Scratch lease_;
  void* p_ = nullptr;
};

// C[M, N] (float32, ldc) = alpha · op(A) · op(B) + beta · C, with A(i, k) =
// ta ? A[k·lda + i] : A[i·lda + k] and B(k, j) = tb ? B[j·ldb + k] : B[k·ldb + j],
// A and B of dtype `dt` (float32, bfloat16 or float16). beta == 0: C not read.
Status gemm_f32acc(DType dt, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda, bool ta,
                   const void* b, int64_t ldb, bool tb, float* c, int64_t ldc, float alpha, float beta,
                   cudaStream_t stream = nullptr);

// out (dtype dt) = in (float32), n elements.
Status convert_from_f32(DType dt, const float* in, void* out, int64_t n, cudaStream_t stream = nullptr);

// The chunked linear log-prob engine (logits = hidden · weightᵀ / T computed
// a vocabulary chunk at a time; no N×V buffer):
//   forward: logp [n] (device, float32) and lse [n];
//   backward (dlogp given, device float32 [n]): dhidden, dweight in the inputs' dtype.
// Returns an OutOfRange status naming the first row whose log-sum-exp is not finite.
struct LinearProblem {
  DType dtype;
  const void* hidden;  // [n, d]
  const void* weight;  // [v, d]
  const int32_t* targets;
  int64_t n, d, v;
  float inv_temperature;
  const char* fn;
};
Status linear_forward(const LinearProblem& p, float* logp, float* lse);
Status linear_backward(const LinearProblem& p, const float* dlogp, const float* lse, void* dhidden,
                       void* dweight);

}  // namespace vp::cuda::detail
