// The InfoNCE row passes (infonce_rows_impl.h over core/simd.h) for the portable path.
// Its includes come first, then the target pragma (docs/architecture.md).
#include <cstdint>

#include "infonce_rows.h"

#pragma GCC push_options
#define VP_SIMD_ISA 0
#include "core/simd.h"

namespace vp::detail {
namespace {
#include "infonce_rows_impl.h"
}  // namespace

InfoNceRowKernels infonce_rows_generic() { return rows_impl::make_row_kernels(); }

}  // namespace vp::detail

#pragma GCC pop_options
