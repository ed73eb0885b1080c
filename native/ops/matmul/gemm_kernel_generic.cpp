// The GEMM micro-kernels (gemm_kernels_impl.h) compiled for the portable path.
#include "gemm_kernels.h"
#define VP_SIMD_ISA 0
#include "gemm_kernels_impl.h"
