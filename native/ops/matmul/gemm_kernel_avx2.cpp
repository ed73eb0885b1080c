// The GEMM micro-kernels (gemm_kernels_impl.h over core/simd.h) for AVX2 + FMA:
// a 6 x 16 tile: 12 ymm accumulators (6 rows x 2 vectors) + 2
// for the B row + 1 broadcast = 15 of the 16 ymm registers, and 12 independent FMA chains
// cover the FMA latency (4 cycles) times the two FMA ports.
// Its includes come first, then the target pragma (docs/architecture.md).
#include <immintrin.h>

#include <cstdint>

#include "gemm_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VP_SIMD_ISA 2
#include "core/simd.h"

namespace vp::detail {
namespace {
constexpr int MR = 6;
constexpr int NV = 2;
#include "gemm_kernels_impl.h"
}  // namespace

GemmKernelInfo gemm_kernel_avx2() { return make_gemm_kernels(); }

}  // namespace vp::detail

#pragma GCC pop_options
