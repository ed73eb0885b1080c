// The GEMM micro-kernels (gemm_kernels_impl.h) compiled for AVX2 + FMA.
#include "gemm_kernels.h"
#define VP_SIMD_ISA 2
#include "gemm_kernels_impl.h"
