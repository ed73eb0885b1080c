// The InfoNCE row passes (infonce_rows_impl.h) compiled for AVX2 + FMA.
#include "infonce_rows.h"
#define VP_SIMD_ISA 2
#include "infonce_rows_impl.h"
