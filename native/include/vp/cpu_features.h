// vp/cpu_features.h — which SIMD path the CPU kernels take.
//
// The ISA is chosen once, at first use, from CPUID: AVX-512 (F) when the CPU and
// OS support it, else AVX2 with FMA, else the portable C++ path. VP_ISA=generic|
// avx2|avx512 forces a path (for tests); asking for one the CPU lacks falls back
// to the best supported one, and isa_reason() says so.
#pragma once

#include <string>

namespace vp {

enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa);

// Best ISA this CPU supports, ignoring VP_ISA.
Isa detect_isa();

// The ISA in use (VP_ISA applied).
Isa active_isa();

// Force an ISA at run time (tests); returns false if the CPU lacks it.
bool set_active_isa(Isa isa);

// Why the active ISA was chosen, e.g. "cpuid: avx512f" or "VP_ISA=avx2".
std::string isa_reason();

// Extensions beside the ISA ladder: true when CPUID (and the OS) report the
// extension and the active ISA is AVX-512 (so VP_ISA=avx2|generic turns them off too).
bool has_avx512_bf16();  // vdpbf16ps, vcvtneps2bf16 (vp/gemm_bf16.h)

}  // namespace vp
