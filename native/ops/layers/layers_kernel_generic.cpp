// The layer kernels (layers_kernels_impl.h) compiled for the portable path.
#include "layers_kernels.h"
#define VP_SIMD_ISA 0
#include "layers_kernels_impl.h"
