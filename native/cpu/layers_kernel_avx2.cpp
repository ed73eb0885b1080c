// The layer kernels' element-wise loops compiled for the avx2 path (the
// shared source is layers_kernels.inc; the target pragma, when there is one,
// comes after every system include, as in gemm_kernel_avx512.cpp).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "layers_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace vp::detail {
namespace {
#include "layers_kernels.inc"
}  // namespace

const LayerKernels& layer_kernels_avx2() { return kTable; }

}  // namespace vp::detail

#pragma GCC pop_options
