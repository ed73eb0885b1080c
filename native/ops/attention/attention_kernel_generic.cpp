// Portable build of the CPU attention kernels (attention_impl.h over core/simd.h).
//
// Micro-tiles: 4 rows x 2 vectors and 6 x 1 of simd::Vec's 8-float arrays, which
// the compiler maps to the baseline SIMD (SSE2 on x86-64).
// exp2 is simd::exp2 with NaN mapped to 0 (a fully masked score block gives
// −inf − −inf); −inf gives 0; its arguments are scores minus their maximum.
// Its includes come first, then the target pragma (docs/architecture.md).
#include <cstdint>

#include "attention_kernels.h"

#pragma GCC push_options
#define VP_SIMD_ISA 0
#include "core/simd.h"

namespace vp::detail {
namespace {

struct V : simd::Vec {
  static constexpr int NVMAX = 2;
  static constexpr int FWD_BQ = 32;
  static constexpr int FWD_BK = 64;
  static constexpr int BWD_BQ = 32;
  static constexpr int BWD_BK = 32;
  static constexpr int mr_for(int nv) { return nv >= 2 ? 4 : 6; }
  static VP_SIMD_INLINE T exp2(T x) { return simd::exp2<simd::kNanToZero | simd::kNonPositive>(x); }
};

#include "attention_impl.h"

}  // namespace

AttnKernels attention_kernels_generic() { return make_kernels(); }

}  // namespace vp::detail

#pragma GCC pop_options
