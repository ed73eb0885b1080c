// vp::cuda::gemm_f32_bf16 (vp/gemm_f32_bf16.h): C[M,N] = bf16(A)[M,K] · op(B) (+ bias)
// on device pointers, A and C float32, B bfloat16 (a frozen pretrained weight).
//
// Algorithm: cuda/gemm.cu's tensor-core tiling (cuda/wmma_tile.cuh) — a 64x64 C
// tile per block of 4 warps (each a 32x32 quarter of 2x2 WMMA 16x16x16 fragments), the K loop
// staging a 64x32 tile of A and a 32x64 tile of op(B) in shared memory as
// bfloat16 — except that A's float32 values are rounded to bfloat16 (nearest
// even, __float2bfloat16_rn) while they are staged, and B is read transposed
// when it is stored [N, K] (trans_b, a linear layer's weight). Accumulation in
// float32 (bf16 × bf16 products are exact in float32), so the values are the CPU
// path's (vp::gemm_f32_bf16) up to the order of the float32 sums. The bias is
// added to the float32 tile before it is written.
// Cost: 2·M·N·K flops on tensor cores; shared memory 64·40 + 32·72 bf16 + 64·68
// floats per block; no workspace.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <climits>
#include <string>

#include "kernel_util.cuh"
#include "vp/cuda.h"
#include "vp/gemm_f32_bf16.h"
#include "wmma_tile.cuh"

namespace vp::cuda {
namespace {

using wmma_tile::BK;
using wmma_tile::BM;
using wmma_tile::BN;

__global__ void __launch_bounds__(128) k_gemm_f32_bf16(const float* __restrict__ a, const __nv_bfloat16* __restrict__ b,
                                                       const float* __restrict__ bias, float* __restrict__ c,
                                                       int64_t m, int64_t n, int64_t k, bool tb) {
  __shared__ __align__(32) __nv_bfloat16 as[BM][BK + 8];
  __shared__ __align__(32) __nv_bfloat16 bs[BK][BN + 8];
  __shared__ __align__(32) float cs[BM][BN + 4];
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * BM, col0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int warp = threadIdx.x / 32;
  const int wr = (warp / 2) * 32, wc = (warp % 2) * 32;
  wmma_tile::Acc acc;
  acc.zero();
  const __nv_bfloat16 zero = __float2bfloat16_rn(0.0f);
  for (int64_t k0 = 0; k0 < k; k0 += BK) {
    for (int idx = threadIdx.x; idx < BM * BK; idx += blockDim.x) {
      const int r = idx / BK, kk = idx % BK;
      const int64_t gi = row0 + r, gk = k0 + kk;
      as[r][kk] = (gi < m && gk < k) ? __float2bfloat16_rn(a[gi * k + gk]) : zero;
    }
    for (int idx = threadIdx.x; idx < BK * BN; idx += blockDim.x) {
      const int kk = idx / BN, cc = idx % BN;
      const int64_t gk = k0 + kk, gj = col0 + cc;
      // B is [N, K] (tb) or [K, N], contiguous.
      bs[kk][cc] = (gk < k && gj < n) ? (tb ? b[gj * k + gk] : b[gk * n + gj]) : zero;
    }
    __syncthreads();
    wmma_tile::mma<__nv_bfloat16>(as, bs, acc, wr, wc);
    __syncthreads();
  }
  wmma_tile::store(cs, acc, wr, wc);
  __syncthreads();
  for (int idx = threadIdx.x; idx < BM * BN; idx += blockDim.x) {
    const int r = idx / BN, cc = idx % BN;
    const int64_t gi = row0 + r, gj = col0 + cc;
    if (gi < m && gj < n) c[gi * n + gj] = bias ? cs[r][cc] + bias[gj] : cs[r][cc];
  }
}

// k == 0: C = bias (or 0) — the product of empty rows.
__global__ void k_fill_bias(const float* __restrict__ bias, int64_t m, int64_t n, float* __restrict__ c) {
  VP_GRID_STRIDE(i, m * n) c[i] = bias ? bias[i % n] : 0.0f;
}

}  // namespace

Status gemm_f32_bf16(const GemmF32Bf16Args& g) {
  const char* fn = "gemm_f32_bf16 (CUDA)";
  if (g.m < 0 || g.n < 0 || g.k < 0) return Status::Invalid(std::string(fn) + ": negative dimension");
  if (g.m == 0 || g.n == 0) return Status::Ok();
  if (!g.c) return Status::Invalid(std::string(fn) + ": C is null");
  if (g.k > 0 && (!g.a || !g.b)) return Status::Invalid(std::string(fn) + ": A or B is null");
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  if (g.k == 0) {
    k_fill_bias<<<kutil::grid_for(g.m * g.n), kutil::kBlock>>>(g.bias, g.m, g.n, g.c);
    return kutil::launch_status(fn);
  }
  const int64_t gx = (g.n + BN - 1) / BN, gy = (g.m + BM - 1) / BM;
  VP_RETURN_IF_ERROR(kutil::check_grid(fn, gx, gy));
  dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  k_gemm_f32_bf16<<<grid, 128>>>(g.a, reinterpret_cast<const __nv_bfloat16*>(g.b), g.bias, g.c, g.m, g.n, g.k,
                                 g.trans_b);
  return kutil::launch_status(fn);
}

}  // namespace vp::cuda
