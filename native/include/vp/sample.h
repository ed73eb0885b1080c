// vp/sample.h — next-token sampling for generation (greedy, temperature, top-p), seeded.
//
// Row r of logits [rows, vocab] gives out[r]:
//  * temperature <= 0: argmax (ties: the lowest id).
//  * else p ∝ exp(logits / temperature) (in double, max-subtracted); with top_p < 1 only the
//    smallest set of most probable tokens whose mass reaches top_p is kept (order: probability
//    descending, then id ascending), renormalized; then one draw u in [0, 1) picks the token by
//    walking the kept tokens in that order (in id order when top_p == 1).
// The draw is Philox4x32-10 with key = seed and counter = (step, stream): stream = streams[r]
// (e.g. the sequence's index in the batch; null: r), step = the generation step. So a batch
// of prompts samples reproducibly, each sequence from its own stream, on any thread count.
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp {

struct SampleOptions {
  float temperature = 1.0f;
  float top_p = 1.0f;     // in (0, 1]
  uint64_t seed = 0;
  uint64_t step = 0;
};

// Invalid for a non-finite logit (naming the row), temperature < 0 or NaN, top_p outside (0, 1].
Status sample_tokens(const float* logits, int64_t rows, int64_t vocab, const SampleOptions& opts,
                     const uint64_t* streams, int32_t* out);

}  // namespace vp
