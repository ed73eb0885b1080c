// The layer kernels' element-wise loops compiled for the generic path (the
// shared source is layers_kernels.inc; the target pragma, when there is one,
// comes after every system include, as in gemm_kernel_avx512.cpp).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "layers_kernels.h"



namespace vp::detail {
namespace {
#include "layers_kernels.inc"
}  // namespace

const LayerKernels& layer_kernels_generic() { return kTable; }

}  // namespace vp::detail


