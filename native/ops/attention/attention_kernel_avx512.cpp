// The CPU attention kernels (attention_isa.h, attention_impl.h) compiled for AVX-512.
#include "attention_kernels.h"
#define VP_SIMD_ISA 512
#include "attention_isa.h"
