// The GEMM micro-kernels (gemm_kernels_impl.h) compiled for AVX-512.
#include "gemm_kernels.h"
#define VP_SIMD_ISA 512
#include "gemm_kernels_impl.h"
