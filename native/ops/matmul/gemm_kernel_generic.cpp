// The GEMM micro-kernels (gemm_kernels_impl.h over core/simd.h) for the portable path:
// a 4 x 8 tile: 8 four-wide accumulators (SSE2 after
// auto-vectorization) fit the 16 registers with room for the B row and the broadcast.
// Its includes come first, then the target pragma (docs/architecture.md).
#include <cstdint>

#include "gemm_kernels.h"

#pragma GCC push_options
#define VP_SIMD_ISA 0
#include "core/simd.h"

namespace vp::detail {
namespace {
constexpr int MR = 4;
constexpr int NV = 1;
#include "gemm_kernels_impl.h"
}  // namespace

GemmKernelInfo gemm_kernel_generic() { return make_gemm_kernels(); }

}  // namespace vp::detail

#pragma GCC pop_options
