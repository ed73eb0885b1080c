// The CPU attention kernels (attention_isa.h, attention_impl.h) compiled for AVX2 + FMA.
#include "attention_kernels.h"
#define VP_SIMD_ISA 2
#include "attention_isa.h"
