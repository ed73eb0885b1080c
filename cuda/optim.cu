// The optimizer's reduction on CUDA (vp/optim.h): the sum of squares of a
// gradient buffer in double, over fixed chunks whose partial sums a single
// block adds in a fixed tree — the same bits on every run.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernel_util.cuh"
#include "scratch_pool.h"
#include "vp/optim.h"

namespace vp::cuda {
namespace {

using kutil::block_reduce;
using kutil::launch_status;

constexpr int64_t kChunk = 8192;
constexpr int kThreads = 256;

__global__ void k_sumsq_chunks(const float* __restrict__ x, int64_t n, double* __restrict__ part) {
  __shared__ double sh[32];
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kChunk, c1 = min(c0 + kChunk, n);
  double s = 0.0;
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) s += static_cast<double>(x[i]) * x[i];
  s = block_reduce(s, sh, kutil::warp_sum_d, 0.0);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void k_sum_parts(const double* __restrict__ part, int64_t n, double* __restrict__ out) {
  __shared__ double sh[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
  s = block_reduce(s, sh, kutil::warp_sum_d, 0.0);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace

Status sum_squares(const float* x, int64_t n, double* out) {
  VP_RETURN_IF_ERROR(kutil::check_available("sum_squares"));
  *out = 0.0;
  if (n <= 0) return Status::Ok();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks > INT32_MAX) return Status::Invalid("sum_squares: too many elements");
  Scratch scratch;  // pooled: no cudaMalloc/cudaFree per call
  double* part = nullptr;
  VP_RETURN_IF_ERROR(scratch.get(&part, static_cast<size_t>(chunks + 1), "sum_squares"));
  k_sumsq_chunks<<<static_cast<unsigned>(chunks), kThreads>>>(x, n, part);
  k_sum_parts<<<1, 1024>>>(part, chunks, part + chunks);
  VP_RETURN_IF_ERROR(launch_status("sum_squares"));
  return copy_to_host(out, part + chunks, sizeof(double));
}

}  // namespace vp::cuda
