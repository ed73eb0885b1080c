// The InfoNCE row passes (infonce_rows_impl.h over core/simd.h) for AVX2 + FMA.
// Its includes come first, then the target pragma (docs/architecture.md).
#include <immintrin.h>

#include <cstdint>

#include "infonce_rows.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VP_SIMD_ISA 2
#include "core/simd.h"

namespace vp::detail {
namespace {
#include "infonce_rows_impl.h"
}  // namespace

InfoNceRowKernels infonce_rows_avx2() { return rows_impl::make_row_kernels(); }

}  // namespace vp::detail

#pragma GCC pop_options
