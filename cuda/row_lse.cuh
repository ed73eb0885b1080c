// Internal: the one per-row log-sum-exp of the CUDA kernels, shared by the
// cross-entropy (layers.cu), the model's LM head (lm_head.cu) and the token
// log-prob ops and their chunked linear engine (logprobs.cu). The CPU
// counterpart is native/ops/layers/row_lse.h.
//
// Online: each thread folds the elements it owns into a state (m, s) one at a
// time (one expf per element, a second only when the max grows), then the
// states are merged across a warp (xor butterfly) and, for a block, across its
// warps (every warp merges the same shared values in the same order). So a row
// is read once, and every thread ends with the same bits: deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "dtype.cuh"

namespace vp::cuda::rowlse {

// The log-sum-exp state of the elements seen so far: m = max of z,
// s = Σ exp(z − m) over the z > −inf (m = −inf, s = 0 while there are none);
// bad: a NaN or +inf was seen.
struct State {
  float m, s;
  bool bad;
};

__device__ __forceinline__ State empty() { return {-INFINITY, 0.0f, false}; }

__device__ __forceinline__ void add(State& st, float z) {
  st.bad |= isnan(z) || z == INFINITY;
  if (z > st.m) {
    st.s = st.s * (st.m > -INFINITY ? expf(st.m - z) : 0.0f) + 1.0f;
    st.m = z;
  } else if (z > -INFINITY) {
    st.s += expf(z - st.m);
  }
}

// Commutative to the bit (so both lanes of a butterfly get the same result).
__device__ __forceinline__ State merge(const State& a, const State& b) {
  const float m = fmaxf(a.m, b.m);
  const float s = (a.m > -INFINITY ? a.s * expf(a.m - m) : 0.0f) + (b.m > -INFINITY ? b.s * expf(b.m - m) : 0.0f);
  return {m, s, a.bad || b.bad};
}

// One thread's state over z = scale·x[j] for j = first, first + stride, ... < n.
template <typename T>
__device__ __forceinline__ State fold(const T* x, int64_t n, float scale, int64_t first, int64_t stride) {
  State st = empty();
  for (int64_t j = first; j < n; j += stride) add(st, dtype::to_f<T>(x[j]) * scale);
  return st;
}

// The states of the 32 lanes of a warp merged; every lane gets the result.
__device__ __forceinline__ State warp_merge(State st) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const State other{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.s, o),
                      __shfl_xor_sync(0xffffffffu, static_cast<int>(st.bad), o) != 0};
    st = merge(st, other);
  }
  return st;
}

// The states of a block merged (blockDim.x a multiple of 32, at most 1024);
// every thread gets the result. Ends with a barrier, so it can be called again.
__device__ __forceinline__ State block_merge(State st) {
  __shared__ float sm[32], ss[32];
  __shared__ int sb[32];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  st = warp_merge(st);
  if (lane == 0) {
    sm[w] = st.m;
    ss[w] = st.s;
    sb[w] = st.bad;
  }
  __syncthreads();
  st = lane < nw ? State{sm[lane], ss[lane], sb[lane] != 0} : empty();
  st = warp_merge(st);
  __syncthreads();
  return st;
}

// The row's whole state: the threads of the block stride over x[0, n).
template <typename T>
__device__ __forceinline__ State block_row(const T* x, int64_t n, float scale) {
  return block_merge(fold(x, n, scale, threadIdx.x, blockDim.x));
}

// log Σ exp(z): NaN after a NaN or +inf, −inf for an empty or all −inf row.
__device__ __forceinline__ float lse(const State& st) { return st.bad ? NAN : st.m + logf(st.s); }

// c · softmax(z) given the row's log-sum-exp.
__device__ __forceinline__ float scaled_softmax(float z, float lse, float c) { return c * expf(z - lse); }

}  // namespace vp::cuda::rowlse
