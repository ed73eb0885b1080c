// The InfoNCE row passes (infonce_rows_impl.h) compiled for the portable path.
#include "infonce_rows.h"
#define VP_SIMD_ISA 0
#include "infonce_rows_impl.h"
