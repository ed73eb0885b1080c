// The GEMM micro-kernels (gemm_kernels_impl.h over core/simd.h) for AVX-512:
// a 12 x 32 tile: 24 zmm accumulators (12 rows x 2 vectors) + 2
// for the B row + 1 broadcast = 27 of the 32 zmm registers; 24 independent FMA chains hide
// the FMA latency on every current core (Zen 4 runs 512-bit FMAs as two 256-bit halves).
// Its includes come first, then the target pragma (docs/architecture.md).
#include <immintrin.h>

#include <cstdint>

#include "gemm_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define VP_SIMD_ISA 512
#include "core/simd.h"

namespace vp::detail {
namespace {
constexpr int MR = 12;
constexpr int NV = 2;
#include "gemm_kernels_impl.h"
}  // namespace

GemmKernelInfo gemm_kernel_avx512() { return make_gemm_kernels(); }

}  // namespace vp::detail

#pragma GCC pop_options
