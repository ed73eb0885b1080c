// The layer kernels (layers_kernels_impl.h over core/simd.h) compiled for the portable path.
// Its includes come first, then the target pragma (docs/architecture.md).
#include <cstdint>

#include "layers_kernels.h"

#pragma GCC push_options
#define VP_SIMD_ISA 0
#include "core/simd.h"

namespace vp::detail {
namespace {
#include "layers_kernels_impl.h"
}  // namespace

const LayerKernels& layer_kernels_generic() { return kTable; }

}  // namespace vp::detail

#pragma GCC pop_options
