// The layer kernels (layers_kernels_impl.h over core/simd.h) compiled for AVX-512.
// Its includes come first, then the target pragma (docs/architecture.md).
#include <immintrin.h>

#include <cstdint>

#include "layers_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define VP_SIMD_ISA 512
#include "core/simd.h"

namespace vp::detail {
namespace {
#include "layers_kernels_impl.h"
}  // namespace

const LayerKernels& layer_kernels_avx512() { return kTable; }

}  // namespace vp::detail

#pragma GCC pop_options
