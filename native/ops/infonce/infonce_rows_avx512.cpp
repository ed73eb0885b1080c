// The InfoNCE row passes (infonce_rows_impl.h) compiled for AVX-512.
#include "infonce_rows.h"
#define VP_SIMD_ISA 512
#include "infonce_rows_impl.h"
