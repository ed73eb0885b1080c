// AVX-512 build of the CPU attention kernels (attention_impl.h over core/simd.h).
//
// Micro-tiles: 6 rows x 4 vectors (64 columns: one query block in the forward,
// one key block in the backward's score products), 8 x 3, 12 x 2 and 12 x 1:
// at most 24 accumulators + the B row + a broadcast in the 32 zmm registers.
// exp2 is simd::exp2 with NaN mapped to 0 (a fully masked score block gives
// −inf − −inf); −inf gives 0; its arguments are scores minus their maximum.
// Its includes come first, then the target pragma (docs/architecture.md).
#include <immintrin.h>

#include <cstdint>

#include "attention_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define VP_SIMD_ISA 512
#include "core/simd.h"

namespace vp::detail {
namespace {

struct V : simd::Vec {
  static constexpr int NVMAX = 4;
  // Block sizes (overridable at build time for tuning experiments).
#ifndef VP_ATT512_FWD_BK
#define VP_ATT512_FWD_BK 128
#endif
#ifndef VP_ATT512_BWD_BQ
#define VP_ATT512_BWD_BQ 64
#endif
#ifndef VP_ATT512_BWD_BK
#define VP_ATT512_BWD_BK 64
#endif
  static constexpr int FWD_BQ = 64;
  static constexpr int FWD_BK = VP_ATT512_FWD_BK;
  static constexpr int BWD_BQ = VP_ATT512_BWD_BQ;
  static constexpr int BWD_BK = VP_ATT512_BWD_BK;
#ifndef VP_ATT512_MR4
#define VP_ATT512_MR4 6
#endif
  static constexpr int mr_for(int nv) { return nv >= 4 ? VP_ATT512_MR4 : nv == 3 ? 8 : 12; }
  static VP_SIMD_INLINE T exp2(T x) { return simd::exp2<simd::kNanToZero | simd::kNonPositive>(x); }
};

#include "attention_impl.h"

}  // namespace

AttnKernels attention_kernels_avx512() { return make_kernels(); }

}  // namespace vp::detail

#pragma GCC pop_options
