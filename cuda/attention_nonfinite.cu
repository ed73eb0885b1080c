// NaN and infinity in the CUDA attention forward: every output a non-finite
// q, k or v reaches becomes NaN, by the same rule as the CPU
// (native/ops/attention/attention_nonfinite.cpp): a non-finite q row, or a
// non-finite k row the query row sees, makes out[i, h, :] and lse[h, i] NaN;
// otherwise a non-finite v[j, g, d] the row sees makes out[i, h, d] NaN.
//
// A memset and two kernels on the stream after the forward, no host synchronization:
//   1. the first non-finite key (relative to its sequence) of each (sequence,
//      kv head), and of each (sequence, kv head, feature) for v, by atomicMin
//      over one pass of k and v (a block per key row);
//   2. a block per query row tests its q (one __syncthreads_or per head) and
//      writes NaN where the rule says.
// Cost with finite inputs: one read of q, k and v and two small int arrays,
// O((Tq·H + 2·Tk·Hkv)·D), against the forward's O(Tq·Tk·H·D). A non-finite
// value of a key a row does not see can still reach that row through the
// forward kernel's masked tile (0 · NaN), as in PyTorch's math attention.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <mutex>
#include <string>

#include "attention_nonfinite.cuh"
#include "dtype.cuh"
#include "vp/cuda.h"

namespace vp::cuda::nonfinite {
namespace {

constexpr int kThreads = 128;

// The sequence holding row r: the last b with cu[b] <= r.
__device__ int seq_of(const int32_t* cu, int batch, int64_t r) {
  int lo = 0, hi = batch - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (cu[mid] <= r) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    first_bad_keys(const T* __restrict__ k, const T* __restrict__ v, const int32_t* __restrict__ cu_k, int batch, int Hkv,
                   int D, int* __restrict__ first_k, int* __restrict__ first_v) {
  const int64_t j = blockIdx.x;
  const int s = seq_of(cu_k, batch, j);
  const int rel = static_cast<int>(j - cu_k[s]);
  const int64_t n = static_cast<int64_t>(Hkv) * D;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    const int g = static_cast<int>(e / D), d = static_cast<int>(e % D);
    if (!isfinite(dtype::to_f<T>(k[j * n + e]))) atomicMin(&first_k[s * Hkv + g], rel);
    if (!isfinite(dtype::to_f<T>(v[j * n + e]))) atomicMin(&first_v[(static_cast<int64_t>(s) * Hkv + g) * D + d], rel);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    poison_rows(const T* __restrict__ q, T* __restrict__ out, float* __restrict__ lse, const int32_t* __restrict__ cu_q,
                const int32_t* __restrict__ cu_k, int batch, int H, int Hkv, int D, int64_t total_q, bool causal,
                const int* __restrict__ first_k, const int* __restrict__ first_v) {
  const int64_t r = blockIdx.x;
  const int s = seq_of(cu_q, batch, r);
  const int64_t i = r - cu_q[s];
  const int64_t tq = cu_q[s + 1] - cu_q[s], tk = cu_k[s + 1] - cu_k[s];
  const int64_t last = causal ? min(tk - 1, i + tk - tq) : tk - 1;  // the last key the row sees
  const int G = H / Hkv;
  const T nan = dtype::from_f<T>(__int_as_float(0x7fc00000));
  for (int h = 0; h < H; ++h) {
    const int g = h / G;
    const int64_t at = (r * H + h) * D;
    int mine = 0;
    for (int d = threadIdx.x; d < D; d += blockDim.x) mine |= !isfinite(dtype::to_f<T>(q[at + d]));
    const bool row_bad = __syncthreads_or(mine) || first_k[s * Hkv + g] <= last;
    for (int d = threadIdx.x; d < D; d += blockDim.x)
      if (row_bad || first_v[(static_cast<int64_t>(s) * Hkv + g) * D + d] <= last) out[at + d] = nan;
    if (row_bad && threadIdx.x == 0) lse[h * total_q + r] = __int_as_float(0x7fc00000);
  }
}

// Grow-only device scratch for the two int arrays (no cudaMalloc per call).
struct Scratch {
  std::mutex mu;
  void* ptr = nullptr;
  size_t bytes = 0;
};

Scratch& scratch() {
  static Scratch* s = new Scratch();  // never destroyed: no CUDA calls at process exit
  return *s;
}

template <typename T>
Status run(const void* q, const void* k, const void* v, void* out, float* lse, const int32_t* cu_q, const int32_t* cu_k,
           int batch, int H, int Hkv, int D, int64_t total_q, int64_t total_k, bool causal, int* first_k, int* first_v) {
  if (total_k > 0) {
    first_bad_keys<T><<<static_cast<unsigned>(total_k), kThreads>>>(static_cast<const T*>(k), static_cast<const T*>(v), cu_k,
                                                                   batch, Hkv, D, first_k, first_v);
  }
  poison_rows<T><<<static_cast<unsigned>(total_q), kThreads>>>(static_cast<const T*>(q), static_cast<T*>(out), lse, cu_q, cu_k,
                                                              batch, H, Hkv, D, total_q, causal, first_k, first_v);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return Status::Internal(std::string("attention (non-finite check): kernel launch: ") + cudaGetErrorString(e));
  return Status::Ok();
}

}  // namespace

Status propagate(DType dtype, const void* q, const void* k, const void* v, void* out, float* lse, const int32_t* cu_q,
                 const int32_t* cu_k, int batch, int heads, int kv_heads, int head_dim, int64_t total_q, int64_t total_k,
                 bool causal) {
  if (total_q == 0) return Status::Ok();
  if (total_q > INT_MAX || total_k > INT_MAX) return Status::Invalid("attention: at most 2^31-1 rows");
  Scratch& sc = scratch();
  std::lock_guard<std::mutex> lock(sc.mu);
  const size_t nk = static_cast<size_t>(batch) * kv_heads, nv = nk * head_dim;
  const size_t want = (nk + nv) * sizeof(int);
  if (want > sc.bytes) {
    if (sc.ptr) cudaFree(sc.ptr);  // synchronizes: no kernel still uses the old buffer
    sc.ptr = nullptr;
    sc.bytes = 0;
    const cudaError_t e = cudaMalloc(&sc.ptr, want);
    if (e != cudaSuccess) return Status::Internal(std::string("attention (non-finite check): cudaMalloc: ") + cudaGetErrorString(e));
    sc.bytes = want;
  }
  int* first_k = static_cast<int*>(sc.ptr);
  int* first_v = first_k + nk;
  // 0x7f in every byte: 0x7f7f7f7f, above every key index ("none").
  const cudaError_t e = cudaMemsetAsync(sc.ptr, 0x7f, want);
  if (e != cudaSuccess) return Status::Internal(std::string("attention (non-finite check): cudaMemset: ") + cudaGetErrorString(e));
  switch (dtype) {
    case DType::kFloat32:
      return run<float>(q, k, v, out, lse, cu_q, cu_k, batch, heads, kv_heads, head_dim, total_q, total_k, causal, first_k, first_v);
    case DType::kBFloat16:
      return run<__nv_bfloat16>(q, k, v, out, lse, cu_q, cu_k, batch, heads, kv_heads, head_dim, total_q, total_k, causal, first_k, first_v);
    case DType::kFloat16:
      return run<__half>(q, k, v, out, lse, cu_q, cu_k, batch, heads, kv_heads, head_dim, total_q, total_k, causal, first_k, first_v);
    default:
      return Status::Invalid("attention: CUDA takes float32, bfloat16 or float16");
  }
}

}  // namespace vp::cuda::nonfinite
