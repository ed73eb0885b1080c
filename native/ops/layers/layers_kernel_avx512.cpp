// The layer kernels (layers_kernels_impl.h) compiled for AVX-512.
#include "layers_kernels.h"
#define VP_SIMD_ISA 512
#include "layers_kernels_impl.h"
