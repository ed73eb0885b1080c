// The layer kernels' element-wise loops compiled for the avx512 path (the
// shared source is layers_kernels.inc; the target pragma, when there is one,
// comes after every system include, as in gemm_kernel_avx512.cpp).
#include <cmath>
#include <cstdint>
#include <cstring>

#include <immintrin.h>

#include "layers_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
// no-trapping-math lets GCC if-convert the exp's range clamps (we never read
// floating-point exception flags); it changes no computed value.
#pragma GCC optimize("no-trapping-math")

namespace vp::detail {
namespace {
#define VP_LAYERS_ISA 512
#include "layers_kernels.inc"
#undef VP_LAYERS_ISA
}  // namespace

const LayerKernels& layer_kernels_avx512() { return kTable; }

}  // namespace vp::detail

#pragma GCC pop_options
