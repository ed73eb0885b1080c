// CUDA matmul: out[M,N] = op(A) · op(B), row-major, f32 accumulation.
//
// bf16/f16: tensor cores through WMMA (16x16x16 fragments). A 64x64 output tile
// per block of 4 warps (each warp a 32x32 quarter: 2x2 fragments); the K loop
// stages 64x32 tiles of op(A) and 32x64 of op(B) in shared memory, converting
// the transposed layouts while loading, so the fragments always read row-major
// tiles. f32: a classic shared-memory tiled SIMT kernel (4x4 outputs a thread).
// Own kernels rather than cuBLASLt: the package must load where no CUDA
// libraries are installed, and the static runtime is all it links.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <climits>
#include <string>

#include "vp/cuda.h"
#include "vp/gemm.h"
#include "wmma_tile.cuh"

namespace vp::cuda {
namespace {

using wmma_tile::BK;
using wmma_tile::BM;
using wmma_tile::BN;

template <typename T>
__device__ __forceinline__ T load_a(const T* a, int64_t lda, bool ta, int64_t i, int64_t k, int64_t m,
                                    int64_t kk) {
  if (i >= m || k >= kk) return T(0.0f);
  return ta ? a[k * lda + i] : a[i * lda + k];
}

template <typename T>
__device__ __forceinline__ T load_b(const T* b, int64_t ldb, bool tb, int64_t k, int64_t j, int64_t kk,
                                    int64_t n) {
  if (k >= kk || j >= n) return T(0.0f);
  return tb ? b[j * ldb + k] : b[k * ldb + j];
}

template <typename T>
__global__ void __launch_bounds__(128) gemm_wmma_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                                        T* __restrict__ c, int64_t m, int64_t n,
                                                        int64_t k, int64_t lda, int64_t ldb, bool ta,
                                                        bool tb) {
  __shared__ __align__(32) T as[BM][BK + 8];
  __shared__ __align__(32) T bs[BK][BN + 8];
  __shared__ __align__(32) float cs[BM][BN + 4];
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * BM, col0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int warp = threadIdx.x / 32;
  const int wr = (warp / 2) * 32, wc = (warp % 2) * 32;
  wmma_tile::Acc acc;
  acc.zero();

  for (int64_t k0 = 0; k0 < k; k0 += BK) {
    for (int idx = threadIdx.x; idx < BM * BK; idx += blockDim.x) {
      int r = idx / BK, kk = idx % BK;
      as[r][kk] = load_a(a, lda, ta, row0 + r, k0 + kk, m, k);
    }
    for (int idx = threadIdx.x; idx < BK * BN; idx += blockDim.x) {
      int kk = idx / BN, cc = idx % BN;
      bs[kk][cc] = load_b(b, ldb, tb, k0 + kk, col0 + cc, k, n);
    }
    __syncthreads();
    wmma_tile::mma<T>(as, bs, acc, wr, wc);
    __syncthreads();
  }
  wmma_tile::store(cs, acc, wr, wc);
  __syncthreads();
  for (int idx = threadIdx.x; idx < BM * BN; idx += blockDim.x) {
    int r = idx / BN, cc = idx % BN;
    int64_t gi = row0 + r, gj = col0 + cc;
    if (gi < m && gj < n) c[gi * n + gj] = T(cs[r][cc]);
  }
}

// C = alpha · op(A) op(B) + beta · C (C read only when beta != 0), C rows ldc apart.
__global__ void __launch_bounds__(256) gemm_f32_kernel(const float* __restrict__ a, const float* __restrict__ b,
                                                       float* __restrict__ c, int64_t m, int64_t n, int64_t k,
                                                       int64_t lda, int64_t ldb, bool ta, bool tb, int64_t ldc,
                                                       float alpha, float beta) {
  __shared__ float as[BK][BM + 1];  // transposed: as[k][i]
  __shared__ float bs[BK][BN + 1];
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * BM, col0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int tr = (threadIdx.x / 16) * 4, tc = (threadIdx.x % 16) * 4;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < k; k0 += BK) {
    for (int idx = threadIdx.x; idx < BM * BK; idx += blockDim.x) {
      int r = idx / BK, kk = idx % BK;
      as[kk][r] = load_a(a, lda, ta, row0 + r, k0 + kk, m, k);
    }
    for (int idx = threadIdx.x; idx < BK * BN; idx += blockDim.x) {
      int kk = idx / BN, cc = idx % BN;
      bs[kk][cc] = load_b(b, ldb, tb, k0 + kk, col0 + cc, k, n);
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < BK; ++kk) {
      float av[4], bv[4];
      for (int i = 0; i < 4; ++i) av[i] = as[kk][tr + i];
      for (int j = 0; j < 4; ++j) bv[j] = bs[kk][tc + j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      int64_t gi = row0 + tr + i, gj = col0 + tc + j;
      if (gi < m && gj < n) {
        float r = alpha * acc[i][j];
        if (beta != 0.0f) r += beta * c[gi * ldc + gj];
        c[gi * ldc + gj] = r;
      }
    }
}

}  // namespace

Status matmul(const TensorView& a, const TensorView& b, bool trans_a, bool trans_b, const TensorView& out) {
  if (!available()) return Status::Unavailable("CUDA is unavailable: " + unavailable_reason());
  const int64_t m = out.shape[0], n = out.shape[1], k = trans_a ? a.shape[0] : a.shape[1];
  if (m == 0 || n == 0) return Status::Ok();
  const int64_t lda = a.shape[1], ldb = b.shape[1];
  dim3 grid(static_cast<unsigned>((n + BN - 1) / BN), static_cast<unsigned>((m + BM - 1) / BM));
  if (grid.y > 65535) return Status::Invalid("matmul: M too large for the CUDA kernel's grid");
  switch (a.dtype) {
    case DType::kFloat32:
      gemm_f32_kernel<<<grid, 256>>>(a.as<float>(), b.as<float>(), out.as<float>(), m, n, k, lda, ldb, trans_a, trans_b,
                                     n, 1.0f, 0.0f);
      break;
    case DType::kBFloat16:
      gemm_wmma_kernel<__nv_bfloat16><<<grid, 128>>>(a.as<__nv_bfloat16>(), b.as<__nv_bfloat16>(),
                                                     out.as<__nv_bfloat16>(), m, n, k, lda, ldb, trans_a, trans_b);
      break;
    case DType::kFloat16:
      gemm_wmma_kernel<__half><<<grid, 128>>>(a.as<__half>(), b.as<__half>(), out.as<__half>(), m, n, k, lda,
                                              ldb, trans_a, trans_b);
      break;
    default:
      return Status::Invalid(std::string("matmul: CUDA does not support dtype ") + dtype_name(a.dtype));
  }
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return Status::Internal(std::string("matmul kernel launch: ") + cudaGetErrorString(e));
  return Status::Ok();
}

Status sgemm(const GemmArgs& g) {
  if (!available()) return Status::Unavailable("sgemm: CUDA is unavailable: " + unavailable_reason());
  if (g.m < 0 || g.n < 0 || g.k < 0) return Status::Invalid("sgemm: m, n, k must be >= 0");
  if (g.m == 0 || g.n == 0) return Status::Ok();
  if (!g.a || !g.b || !g.c) return Status::Invalid("sgemm: a, b and c must not be null");
  if (g.lda < (g.trans_a ? g.m : g.k) || g.ldb < (g.trans_b ? g.k : g.n) || g.ldc < g.n)
    return Status::Invalid("sgemm: a leading dimension is smaller than its row");
  dim3 grid(static_cast<unsigned>((g.n + BN - 1) / BN), static_cast<unsigned>((g.m + BM - 1) / BM));
  if ((g.m + BM - 1) / BM > 65535) return Status::Invalid("sgemm: M too large for the CUDA kernel's grid");
  if ((g.n + BN - 1) / BN > INT32_MAX) return Status::Invalid("sgemm: N too large for the CUDA kernel's grid");
  gemm_f32_kernel<<<grid, 256>>>(g.a, g.b, g.c, g.m, g.n, g.k, g.lda, g.ldb, g.trans_a, g.trans_b, g.ldc, g.alpha,
                                 g.beta);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return Status::Internal(std::string("sgemm kernel launch: ") + cudaGetErrorString(e));
  return Status::Ok();
}

}  // namespace vp::cuda
