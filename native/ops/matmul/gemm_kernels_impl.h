// Internal: the GEMM micro-kernels (see gemm_kernels.h), written once over
// simd::Vec and compiled by each gemm_kernel_<isa>.cpp (which defines
// VP_SIMD_ISA and includes this header after its other includes; core/simd.h
// sets the target).
//
// One register tile, R rows × NV vectors: for each k, NV vectors of B are
// loaded and each of the R values of A broadcast against them (R·NV FMAs per
// 2 + R loads: register-bound, never load-bound, for R·NV ≥ 12). Cost: kc·R·NV
// FMAs, plus one pass of stores over the valid mr × nr part of C.
#include "core/simd.h"

namespace vp::detail {
namespace {

using simd::Vec;
using VT = simd::T;
using VM = simd::M;

// The tile of each ISA (why: gemm_kernels.h).
constexpr int MR = VP_SIMD_ISA == 512 ? 8 : VP_SIMD_ISA == 2 ? 6 : 4;
constexpr int NV = VP_SIMD_ISA == 512 ? 3 : VP_SIMD_ISA == 0 ? 1 : 2;
constexpr int NR = NV * Vec::W;

// C[i, j] = alpha · Σ_k A(k, i)·B(k, j) + beta · C[i, j] for i < mr, j < nr
// (beta == 0: C is not read), with
//   A(k, i) = kAT ? a[i·lda + k] : a[k·lda + i]   (all R rows are read: rows
//                                                  past mr must be readable)
//   B(k, j) = b[k·ldb + j]                         (kMaskB: columns past nr are
//                                                  not read; else B is padded)
template <int R, int NVT, bool kAT, bool kMaskB>
VP_SIMD_INLINE void tile(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                         int64_t ldc, float alpha, float beta, int mr, int nr) {
  constexpr int W = Vec::W;
  VM mask[NVT];
#pragma GCC unroll 4
  for (int v = 0; v < NVT; ++v) mask[v] = Vec::mask(nr - v * W);
  // C usually comes from far away (a gradient accumulated over many calls):
  // start fetching it now so that it is in L1 when the tile is stored.
  // Every vector of the row: the 8 × 48 AVX-512 tile's rows span 3 cache lines.
  for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NVT; ++v) __builtin_prefetch(c + i * ldc + v * W);
  VT acc[R][NVT];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NVT; ++v) acc[i][v] = Vec::zero();

  // kAT: rows in groups of three from one base pointer (base + {0, 1, 2}·lda),
  // so that the unrolled loop needs few address registers.
  const float* ab[(R + 2) / 3];
#pragma GCC unroll 4
  for (int g = 0; g < (R + 2) / 3; ++g) ab[g] = a + 3 * g * lda;
  const int64_t l1 = lda, l2 = 2 * lda;

  for (int64_t k = 0; k < kc; ++k) {
    VT bv[NVT];
#pragma GCC unroll 4
    for (int v = 0; v < NVT; ++v) bv[v] = kMaskB ? Vec::loadm(b + v * W, mask[v]) : Vec::load(b + v * W);
    __builtin_prefetch(b + 8 * ldb);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const VT x = Vec::set1(kAT ? ab[i / 3][k + (i % 3 == 0 ? 0 : i % 3 == 1 ? l1 : l2)] : a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NVT; ++v) acc[i][v] = Vec::fma(x, bv[v], acc[i][v]);
    }
    if (!kAT) a += lda;
    b += ldb;
  }

  const VT va = Vec::set1(alpha), vb = Vec::set1(beta);
  if (mr == R && nr == NVT * W) {  // a full tile: plain stores
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NVT; ++v) {
        float* p = c + i * ldc + v * W;
        VT r = Vec::mul(va, acc[i][v]);
        if (beta != 0.0f) r = Vec::fma(vb, Vec::load(p), r);
        Vec::store(p, r);
      }
    return;
  }
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    if (i >= mr) break;
#pragma GCC unroll 4
    for (int v = 0; v < NVT; ++v) {
      float* p = c + i * ldc + v * W;
      VT r = Vec::mul(va, acc[i][v]);
      if (beta != 0.0f) r = Vec::fma(vb, Vec::loadm(p, mask[v]), r);
      Vec::storem(p, r, mask[v]);
    }
  }
}

// The SGEMM micro-kernel on packed panels (A: MR values per k, B: NR per k,
// both zero-padded). Edge tiles run a smaller instance of the same template
// (a third or two thirds of the rows, one vector) on the same panels, so small
// and ragged products do not pay for a full tile of padding.
template <int RT, int NVT>
VP_SIMD_INLINE void packed_rows(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
                                float beta, int mr, int nr) {
  constexpr int R1 = RT / 3 > 0 ? RT / 3 : 1, R2 = 2 * RT / 3 > R1 ? 2 * RT / 3 : RT;
  if (mr > R2) tile<RT, NVT, false, false>(kc, ap, MR, bp, NR, c, ldc, alpha, beta, mr, nr);
  else if (mr > R1) tile<R2, NVT, false, false>(kc, ap, MR, bp, NR, c, ldc, alpha, beta, mr, nr);
  else tile<R1, NVT, false, false>(kc, ap, MR, bp, NR, c, ldc, alpha, beta, mr, nr);
}

void packed_kernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha, float beta,
                   int mr, int nr) {
  // A ragged last panel runs only the vectors it needs (a 32-column edge of the
  // AVX-512 8 × 48 tile: 2 vectors, not 3 with one of zero padding).
  if (NV > 1 && nr <= Vec::W) packed_rows<MR, 1>(kc, ap, bp, c, ldc, alpha, beta, mr, nr);
  else if (NV > 2 && nr <= 2 * Vec::W) packed_rows<MR, 2>(kc, ap, bp, c, ldc, alpha, beta, mr, nr);
  else packed_rows<MR, NV>(kc, ap, bp, c, ldc, alpha, beta, mr, nr);
}

// The strided micro-kernels (gemm_kernels.h): the full MR × NR tile, B masked
// past nr (the caller's matrices are not padded).
template <bool kAT>
void strided_kernel(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                    float alpha, float beta, int mr, int nr) {
  if (nr == NR) tile<MR, NV, kAT, false>(kc, a, lda, b, ldb, c, ldc, alpha, beta, mr, nr);
  else tile<MR, NV, kAT, true>(kc, a, lda, b, ldb, c, ldc, alpha, beta, mr, nr);
}

}  // namespace

GemmKernelInfo VP_SIMD_NAME(gemm_kernel)() { return {packed_kernel, strided_kernel<false>, strided_kernel<true>, MR, NR}; }

}  // namespace vp::detail
