// The CPU attention kernels (attention_isa.h, attention_impl.h) compiled for the portable path.
#include "attention_kernels.h"
#define VP_SIMD_ISA 0
#include "attention_isa.h"
