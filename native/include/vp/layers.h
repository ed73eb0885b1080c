// vp/layers.h — the building blocks of the built-in VideoLM (docs/model.md), CPU, float32.
//
// Every layer has a forward and a backward pass over plain row-major float32
// buffers (the model owns its parameters and activations in flat arrays, so
// these take raw pointers rather than TensorViews). Conventions shared by all:
//
//  * Rows are tokens. `rows`/`n` count them; `dim`/`d` is the feature width.
//  * Gradients of activations (dx, dgate, ...) are OVERWRITTEN.
//  * Gradients of parameters (dgain, dw, db, dtable) are ACCUMULATED when
//    `accumulate` is true (gradient accumulation over micro-batches; the
//    caller zeroes them once per step) and overwritten otherwise.
//  * Reductions over rows (dgain, db, embedding scatter-add) run over fixed
//    blocks of rows whose partial sums are added in block order, so results
//    are bitwise identical for every thread count (and free of races).
//  * Threading goes through vp::parallel_for; element-wise inner loops are
//    compiled for the active ISA (AVX-512, AVX2+FMA or generic; see
//    ops/layers/layers_kernels_impl.h). Results differ between ISAs only by rounding.
//  * Errors: Status::Invalid for bad sizes or null pointers, OutOfRange for an
//    index (token id, target, position) outside its range; nothing is written
//    when an index check fails.
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp {

// RMSNorm, SwiGLU, RoPE, embedding and softmax cross-entropy (declared with their
// contracts in vp/layers_decl.inc, shared with the CUDA versions below).
#include "vp/layers_decl.inc"

// ---- Linear ---------------------------------------------------------------
// y[n, out] = x[n, in] · w[out, in]^T + b[out] (b may be null). Through vp::sgemm.
Status linear_forward(const float* x, const float* w, const float* b, int64_t n, int64_t in_dim,
                      int64_t out_dim, float* y);
// dx[n, in] = dy · w (dx may be null: not computed); dw[out, in] (+)= dy^T · x;
// db[out] (+)= column sums of dy (db may be null).
Status linear_backward(const float* dy, const float* x, const float* w, int64_t n, int64_t in_dim,
                       int64_t out_dim, float* dx, float* dw, float* db, bool accumulate);

// ---- Patch embedding -----------------------------------------------------------
// Frames [frames, height, width, 3] (uint8, scaled to [-1, 1] as v / 127.5 - 1,
// or float32 taken as they are) → patches [frames * (height/p) * (width/p), p*p*3],
// patch index f*(H/p)*(W/p) + py*(W/p) + px, features in (dy, dx, channel) order.
// height and width must be multiples of p.
Status patchify_u8(const uint8_t* frames, int64_t num_frames, int64_t height, int64_t width,
                   int64_t patch, float* patches);
Status patchify_f32(const float* frames, int64_t num_frames, int64_t height, int64_t width,
                    int64_t patch, float* patches);
// The adjoint of patchify_f32 (dframes overwritten).
Status unpatchify_f32(const float* dpatches, int64_t num_frames, int64_t height, int64_t width,
                      int64_t patch, float* dframes);
// emb[P, d] = patchify(frames) · w[d, p*p*3]^T + b[d]. `patches` is caller
// scratch of P * p*p*3 floats (kept for the backward pass; may be null, then
// allocated internally and freed).
Status patch_embed_forward_u8(const uint8_t* frames, int64_t num_frames, int64_t height,
                              int64_t width, int64_t patch, const float* w, const float* b,
                              int64_t dim, float* patches, float* emb);
// The same for float32 frames (taken as they are).
Status patch_embed_forward_f32(const float* frames, int64_t num_frames, int64_t height,
                               int64_t width, int64_t patch, const float* w, const float* b,
                               int64_t dim, float* patches, float* emb);
// dw (+)= demb^T · patches, db (+)= column sums of demb. `patches` from the forward pass.
Status patch_embed_backward(const float* demb, const float* patches, int64_t num_patches,
                            int64_t patch_features, int64_t dim, float* dw, float* db,
                            bool accumulate);

// ---- Small vector helpers the model uses (threaded, vectorized) ----------------
// y += x (n floats).
Status add_inplace(float* y, const float* x, int64_t n);
// sum of squares in double, over fixed blocks summed in order (thread-count independent).
double sum_squares(const float* x, int64_t n);

// ---- CUDA versions (float32, device pointers; same semantics as above) -------------
// Declared in every build; a CPU-only build's stubs return Status::Unavailable.
// Deterministic like the CPU kernels: column reductions (dgain) are one thread
// per column over the rows in order; the embedding backward sorts ids (on the
// host, from a copy) and gives each thread one (row, column) of the table; the
// cross-entropy mean is summed by one block in row order. `loss` and `count`
// of cross_entropy_forward are HOST pointers; everything else is on the device.
namespace cuda {
#include "vp/layers_decl.inc"
}  // namespace cuda

}  // namespace vp
