// vp/rng.h — seeded, counter-based random numbers for parameter initialization.
//
// The generator is Philox4x32-10 (Salmon et al., "Parallel random numbers: as
// easy as 1, 2, 3", SC'11): a keyed bijection of a 128-bit counter. Element i
// of a fill depends only on (seed, stream, i), so a fill gives the same bits
// for every thread count and could be reproduced on a GPU. `stream` separates
// independent fills under one seed (e.g. one stream per parameter tensor).
//
// Counter layout: (i / 2 low 32 bits, i / 2 high 32 bits, stream low, stream
// high); key = (seed low, seed high). One Philox call gives 4 x 32 bits, i.e.
// two 64-bit uniforms u1 in (0, 1], u2 in [0, 1) (53-bit), hence two values:
//   normal:  element 2j = sqrt(-2 ln u1) cos(2 pi u2), 2j+1 = ... sin(...)
//   uniform: element 2j = u1', 2j+1 = u2' (both in [0, 1)), scaled to [lo, hi).
// All arithmetic is in double, rounded once to float.
#pragma once

#include <array>
#include <cstdint>

#include "vp/status.h"

namespace vp {

// The raw generator (exposed for known-answer tests).
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// out[i] = mean + std * N(0, 1), i in [0, n).
Status rng_normal(uint64_t seed, uint64_t stream, float mean, float std, float* out, int64_t n);

// out[i] uniform in [lo, hi).
Status rng_uniform(uint64_t seed, uint64_t stream, float lo, float hi, float* out, int64_t n);

}  // namespace vp
