// Internal: the per-ISA part of the CPU attention: V (simd::Vec plus the block
// sizes, the micro-tile shapes and exp2 that attention_impl.h needs), then the
// kernels of attention_impl.h and the entry point attention_kernels_<isa>().
// Included by attention_kernel_<isa>.cpp, which defines VP_SIMD_ISA first;
// core/simd.h, included here, sets the target (docs/architecture.md).
//
// Micro-tiles (rows x vectors, at most the accumulators the registers hold with
// the B row and a broadcast):
//  - AVX-512: 6 x 4 (64 columns: one query block in the forward, one key block
//    in the backward's score products), 8 x 3, 12 x 2 and 12 x 1 in 32 zmm;
//  - AVX2: 6 x 2 (16 columns) and 8 x 1 in 16 ymm;
//  - portable: 4 x 2 and 6 x 1 of 8-float arrays (SSE2 after vectorization).
// exp2 is simd::exp2 with NaN mapped to 0 (a fully masked score block gives
// −inf − −inf); −inf gives 0; its arguments are scores minus their maximum.
#include "core/simd.h"

namespace vp::detail {
namespace {

// Block sizes of the AVX-512 path (overridable at build time for tuning experiments).
#ifndef VP_ATT512_FWD_BK
#define VP_ATT512_FWD_BK 128
#endif
#ifndef VP_ATT512_BWD_BQ
#define VP_ATT512_BWD_BQ 64
#endif
#ifndef VP_ATT512_BWD_BK
#define VP_ATT512_BWD_BK 64
#endif
#ifndef VP_ATT512_MR4
#define VP_ATT512_MR4 6
#endif

// Vectors per micro-tile row, block sizes (queries, keys), micro-tile rows.
struct Shape {
  static constexpr bool k512 = VP_SIMD_ISA == 512, k2 = VP_SIMD_ISA == 2;
  static constexpr int NVMAX = k512 ? 4 : 2;
  static constexpr int FWD_BQ = k512 ? 64 : 32;
  static constexpr int FWD_BK = k512 ? VP_ATT512_FWD_BK : k2 ? 128 : 64;
  static constexpr int BWD_BQ = k512 ? VP_ATT512_BWD_BQ : k2 ? 64 : 32;
  static constexpr int BWD_BK = k512 ? VP_ATT512_BWD_BK : 32;
  static constexpr int mr_for(int nv) {
    if (k512) return nv >= 4 ? VP_ATT512_MR4 : nv == 3 ? 8 : 12;
    if (k2) return nv >= 2 ? 6 : 8;
    return nv >= 2 ? 4 : 6;
  }
};

struct V : simd::Vec, Shape {
  static VP_SIMD_INLINE T exp2(T x) { return simd::exp2<simd::kNanToZero | simd::kNonPositive>(x); }
};

#include "attention_impl.h"

}  // namespace

AttnKernels VP_SIMD_NAME(attention_kernels)() { return make_kernels(); }

}  // namespace vp::detail
