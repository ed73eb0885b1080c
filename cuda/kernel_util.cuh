// Small helpers shared by the float32 layer and model kernels (layers.cu, rows.cu,
// vision.cu, lm_head.cu, decode_attention.cu, optim.cu): launch checks, grid sizing
// and limits, warp and block reductions of a fixed shape (deterministic).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "host_checks.h"
#include "vp/cuda.h"
#include "vp/status.h"

namespace vp::cuda::kutil {

constexpr int kBlock = 256;

inline Status launch_status(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return Status::Internal(std::string(what) + " kernel launch: " + cudaGetErrorString(e));
  return Status::Ok();
}

inline Status check_available(const char* what) {
  if (!available()) return Status::Unavailable(std::string(what) + ": CUDA is unavailable: " + unavailable_reason());
  return Status::Ok();
}

// Invalid (naming fn) when a grid of x × y blocks exceeds CUDA's limits (x < 2^31, y <= 65535).
inline Status check_grid(const char* fn, int64_t x, int64_t y = 1) {
  const std::string p = host::grid_problem(fn, x, y);
  return p.empty() ? Status::Ok() : Status::Invalid(p);
}

// Blocks for a grid-stride loop over n elements.
inline unsigned grid_for(int64_t n, int block = kBlock) {
  const int64_t g = (n + block - 1) / block;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(g, 1), 65535LL * 32));
}

#define VP_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ long long warp_sum_ll(long long v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide reductions (blockDim.x a multiple of 32, <= 1024; sh: 32 shared
// elements); every thread gets the result.
template <typename T, typename Op>
__device__ T block_reduce(T v, T* sh, Op warp_op, T identity) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_op(v);
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = threadIdx.x < nw ? sh[threadIdx.x] : identity;
  if (w == 0) v = warp_op(v);
  if (threadIdx.x == 0) sh[0] = v;
  __syncthreads();
  v = sh[0];
  __syncthreads();
  return v;
}

}  // namespace vp::cuda::kutil
