// Portable SGEMM micro-kernel (x86-64 baseline, i.e. SSE2 after auto-vectorization).
// A 4 x 8 tile: 8 four-wide accumulators fit the 16 SSE registers with room for
// the B row and the broadcast A value.
#include "gemm_kernels.h"

namespace vp::detail {
namespace {

constexpr int MR = 4;
constexpr int NR = 8;

void kernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
            float beta, int mr, int nr) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* a = ap + k * MR;
    const float* b = bp + k * NR;
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  }
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < nr; ++j) ci[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < nr; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
  }
}

}  // namespace

GemmKernelInfo gemm_kernel_generic() { return {kernel, MR, NR}; }

}  // namespace vp::detail
