// The VideoLM's LM-head loss kernels on CUDA (vp/model_kernels.h): per-row
// log-sum-exp (the shared one of row_lse.cuh) and target logit (the host sums
// the loss in double from these), and the in-place gradient
// coef[r] · (softmax − onehot). One block per row, deterministic.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernel_util.cuh"
#include "row_lse.cuh"
#include "vp/model_kernels.h"

namespace vp::cuda {
namespace {

using kutil::kBlock;
using kutil::launch_status;

__global__ void k_row_lse_target(const float* __restrict__ logits, const int32_t* __restrict__ t, int64_t v,
                                 float* __restrict__ lse, float* __restrict__ tl) {
  const int64_t r = blockIdx.x;
  const float* x = logits + r * v;
  const rowlse::State st = rowlse::block_row(x, v, 1.0f);
  if (threadIdx.x == 0) {
    lse[r] = rowlse::lse(st);
    tl[r] = x[t[r]];
  }
}

__global__ void k_softmax_xent_grad(float* __restrict__ logits, const int32_t* __restrict__ t,
                                    const float* __restrict__ lse, const float* __restrict__ coef, int64_t v) {
  const int64_t r = blockIdx.x;
  float* x = logits + r * v;
  const float l = lse[r], c = coef[r];
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) x[j] = rowlse::scaled_softmax(x[j], l, c);
  __syncthreads();  // the target's element is written by whichever thread owns it above
  if (threadIdx.x == 0) x[t[r]] -= c;
}

}  // namespace

Status row_lse_target(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab, float* lse,
                      float* target_logit) {
  VP_RETURN_IF_ERROR(kutil::check_available("row_lse_target"));
  if (rows <= 0) return Status::Ok();
  if (rows > INT32_MAX) return Status::Invalid("row_lse_target: too many rows");
  k_row_lse_target<<<static_cast<unsigned>(rows), kBlock>>>(logits, targets, vocab, lse, target_logit);
  return launch_status("row_lse_target");
}

Status softmax_xent_grad(float* logits, const int32_t* targets, const float* lse, const float* coef, int64_t rows,
                         int64_t vocab) {
  VP_RETURN_IF_ERROR(kutil::check_available("softmax_xent_grad"));
  if (rows <= 0) return Status::Ok();
  if (rows > INT32_MAX) return Status::Invalid("softmax_xent_grad: too many rows");
  k_softmax_xent_grad<<<static_cast<unsigned>(rows), kBlock>>>(logits, targets, lse, coef, vocab);
  return launch_status("softmax_xent_grad");
}

}  // namespace vp::cuda
