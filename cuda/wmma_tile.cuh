// The tensor-core tile shared by cuda/gemm.cu (bf16/f16 × bf16/f16) and
// cuda/gemm_f32_bf16.cu (float32 rounded to bf16 × bf16): a 64x64 C tile per
// block of 4 warps, each warp a 32x32 quarter of 2x2 WMMA 16x16x16 fragments
// with float32 accumulators; the callers stage 64x32 tiles of op(A) and 32x64
// tiles of op(B) row-major in shared memory (rows padded by 8 elements) and
// call mma() once per staged K tile, then store() the accumulators into a
// float32 shared tile (rows padded by 4) for their own epilogue.
#pragma once

#include <mma.h>

namespace vp::cuda::wmma_tile {

constexpr int BM = 64, BN = 64, BK = 32;

// The accumulators of one warp.
struct Acc {
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f[2][2];
  __device__ void zero() {
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) nvcuda::wmma::fill_fragment(f[i][j], 0.0f);
  }
};

// The warp's quarter (rows wr.., columns wc..) of one staged K tile.
template <typename T>
__device__ __forceinline__ void mma(const T (*as)[BK + 8], const T (*bs)[BN + 8], Acc& acc, int wr, int wc) {
  using namespace nvcuda;
  for (int kk = 0; kk < BK; kk += 16) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
    for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &as[wr + 16 * i][kk], BK + 8);
    for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &bs[kk][wc + 16 * j], BN + 8);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) wmma::mma_sync(acc.f[i][j], fa[i], fb[j], acc.f[i][j]);
  }
}

// The warp's accumulators into the float32 tile cs.
__device__ __forceinline__ void store(float (*cs)[BN + 4], const Acc& acc, int wr, int wc) {
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      nvcuda::wmma::store_matrix_sync(&cs[wr + 16 * i][wc + 16 * j], acc.f[i][j], BN + 4, nvcuda::wmma::mem_row_major);
}

}  // namespace vp::cuda::wmma_tile
