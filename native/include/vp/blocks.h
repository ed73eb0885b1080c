// vp/blocks.h — VideoLM sub-blocks composed from the layer kernels (CPU, float32):
// the pieces of the model's forward/backward that do not involve attention.
// Part 2 of issue 7 assembles the decoder from these plus vp::attention.
//
// Parameter gradients accumulate when `accumulate` (as in vp/layers.h).
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp {

// ---- SwiGLU MLP sub-block with pre-norm and residual ---------------------------
//   y = x + swiglu(rmsnorm(x; gain) · w_gate_upᵀ) · w_downᵀ
// x, y: [n, d]; gain: [d]; w_gate_up: [2F, d] (rows [0,F) gate, [F,2F) up); w_down: [d, F].
// The forward fills the cache the backward needs (caller-owned, sizes below).
struct MlpCache {
  float* rstd;   // [n]
  float* xn;     // [n, d]   normalized input
  float* gu;     // [n, 2F]  gate | up pre-activations
  float* act;    // [n, F]   swiglu output
};
Status mlp_block_forward(const float* x, int64_t n, int64_t d, int64_t f, const float* gain,
                         const float* w_gate_up, const float* w_down, float eps, const MlpCache& cache,
                         float* y);
// dx = dy + (gradient through the MLP); y may alias nothing the backward reads.
// dx may equal dy (in place).
Status mlp_block_backward(const float* dy, const float* x, int64_t n, int64_t d, int64_t f,
                          const float* gain, const float* w_gate_up, const float* w_down, float eps,
                          const MlpCache& cache, float* dx, float* dgain, float* dw_gate_up,
                          float* dw_down, bool accumulate);

// ---- LM head + loss on the rows that have a target ----------------------------------
// For rows r with targets[r] >= 0 (others, -1, are skipped):
//   logits_r = rmsnorm(hidden_r; gain) · wᵀ  (w: [vocab, d], the tied embedding or lm_head)
//   loss = mean over those rows of cross-entropy(logits_r, targets[r])
// and, in the same pass, the gradients of grad_loss * loss: dhidden (overwritten,
// zero on rows without a target), dgain and dw (accumulated when `accumulate`).
// Rows go in chunks of `chunk_rows`, so the logits never take more than
// chunk_rows x vocab floats (0: 256). *count (may be null): rows with a target.
Status lm_head_loss_with_grad(const float* hidden, int64_t n, int64_t d, const int32_t* targets,
                              const float* gain, const float* w, int64_t vocab, float eps,
                              float grad_loss, int64_t chunk_rows, float* loss, int64_t* count,
                              float* dhidden, float* dgain, float* dw, bool accumulate);

// ---- Vision embedding ---------------------------------------------------------------
// frames: uint8 [videos, frames, H, W, 3] (H = W = image, frames <= max_frames)
//   tokens[v, f, p, :] = patch_embed(patch p of frame f) + frame_pos[f] + patch_pos[p]
// tokens: [videos * frames * P, d]. `patches` is the caller's cache of
// videos*frames*P x patch*patch*3 floats, filled by the forward for the backward.
Status vision_embed_forward(const uint8_t* frames, int64_t videos, int64_t num_frames, int64_t image,
                            int64_t patch, const float* w, const float* b, const float* frame_pos,
                            const float* patch_pos, int64_t d, float* patches, float* tokens);
Status vision_embed_backward(const float* dtokens, const float* patches, int64_t videos,
                             int64_t num_frames, int64_t image, int64_t patch, int64_t d, float* dw,
                             float* db, float* dframe_pos, float* dpatch_pos, bool accumulate);

}  // namespace vp
