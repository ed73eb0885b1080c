// AVX2+FMA build of the CPU attention kernels (attention_impl.h over core/simd.h).
//
// Micro-tiles: 6 rows x 2 vectors (16 columns) and 8 x 1 in the 16 ymm registers.
// exp2 is simd::exp2 with NaN mapped to 0 (a fully masked score block gives
// −inf − −inf); −inf gives 0; its arguments are scores minus their maximum.
// Its includes come first, then the target pragma (docs/architecture.md).
#include <immintrin.h>

#include <cstdint>

#include "attention_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VP_SIMD_ISA 2
#include "core/simd.h"

namespace vp::detail {
namespace {

struct V : simd::Vec {
  static constexpr int NVMAX = 2;
  static constexpr int FWD_BQ = 32;
  static constexpr int FWD_BK = 128;
  static constexpr int BWD_BQ = 64;
  static constexpr int BWD_BK = 32;
  static constexpr int mr_for(int nv) { return nv >= 2 ? 6 : 8; }
  static VP_SIMD_INLINE T exp2(T x) { return simd::exp2<simd::kNanToZero | simd::kNonPositive>(x); }
};

#include "attention_impl.h"

}  // namespace

AttnKernels attention_kernels_avx2() { return make_kernels(); }

}  // namespace vp::detail

#pragma GCC pop_options
