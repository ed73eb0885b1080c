// The layer kernels (layers_kernels_impl.h) compiled for AVX2 + FMA.
#include "layers_kernels.h"
#define VP_SIMD_ISA 2
#include "layers_kernels_impl.h"
