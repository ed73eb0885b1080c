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

// ---- RMSNorm ------------------------------------------------------------
// y[r, :] = x[r, :] * rstd[r] * gain[:],  rstd[r] = 1 / sqrt(mean(x[r, :]^2) + eps).
// rstd (may be null) receives the per-row factor that the backward pass reuses.
Status rmsnorm_forward(const float* x, const float* gain, int64_t rows, int64_t dim, float eps,
                       float* y, float* rstd);
// dx (overwritten) and dgain (accumulated when `accumulate`). rstd from the
// forward pass; null recomputes it from x and eps.
Status rmsnorm_backward(const float* dy, const float* x, const float* gain, const float* rstd,
                        int64_t rows, int64_t dim, float eps, float* dx, float* dgain,
                        bool accumulate);

// ---- SwiGLU -------------------------------------------------------------
// h[r, j] = silu(gate[r, j]) * up[r, j], silu(g) = g * sigmoid(g), j < ffn.
// gate and up rows are `ld_in` floats apart (ld_in >= ffn), so both can live
// in one [rows, 2*ffn] GEMM output: gate = buf, up = buf + ffn, ld_in = 2*ffn.
// h rows are ffn floats apart.
Status swiglu_forward(const float* gate, const float* up, int64_t rows, int64_t ffn, int64_t ld_in,
                      float* h);
// dgate, dup (overwritten) share the input layout (ld_in); they may point into
// one [rows, 2*ffn] buffer.
Status swiglu_backward(const float* dh, const float* gate, const float* up, int64_t rows,
                       int64_t ffn, int64_t ld_in, float* dgate, float* dup);

// ---- Rotary position embedding -----------------------------------------
// x is [tokens, heads, head_dim] (head_dim even), positions[t] >= 0 is the
// token's position within its sequence (as packing produces). Pairs
// (i, i + head_dim/2) of every head are rotated by angle pos * theta^(-2i/head_dim)
// (the "rotate half" convention of GPT-NeoX / LLaMA). Angles are computed in
// double. out may equal x (in place). inverse = true rotates by the negative
// angle, which is the backward pass (the rotation is orthogonal): dx = rope(dy, inverse).
Status rope_apply(const float* x, const int32_t* positions, int64_t tokens, int64_t heads,
                  int64_t head_dim, float theta, bool inverse, float* out);

// ---- Embedding ------------------------------------------------------------
// out[n, :] = table[ids[n], :], ids in [0, vocab).
Status embedding_forward(const float* table, int64_t vocab, int64_t dim, const int32_t* ids,
                         int64_t n, float* out);
// dtable[v, :] (+)= sum of dout[n, :] over n with ids[n] == v, summed in
// increasing n: deterministic and race-free (each thread owns whole rows of
// dtable). Rows of dtable that no id touches are zeroed when !accumulate.
Status embedding_backward(const float* dout, const int32_t* ids, int64_t n, int64_t vocab,
                          int64_t dim, float* dtable, bool accumulate);

// ---- Linear ---------------------------------------------------------------
// y[n, out] = x[n, in] · w[out, in]^T + b[out] (b may be null). Through vp::sgemm.
Status linear_forward(const float* x, const float* w, const float* b, int64_t n, int64_t in_dim,
                      int64_t out_dim, float* y);
// dx[n, in] = dy · w (dx may be null: not computed); dw[out, in] (+)= dy^T · x;
// db[out] (+)= column sums of dy (db may be null).
Status linear_backward(const float* dy, const float* x, const float* w, int64_t n, int64_t in_dim,
                       int64_t out_dim, float* dx, float* dw, float* db, bool accumulate);

// ---- Softmax cross-entropy over a vocabulary ----------------------------------
// logits [n, vocab], targets[n] in [0, vocab) or -1 (ignored). loss = mean over
// the counted rows of (lse[r] - logits[r, targets[r]]); 0 when no row counts.
// lse[r] (may be null) receives log-sum-exp of each row (also for ignored rows).
// *count (may be null) receives the number of counted rows.
Status cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                             float* loss, float* lse, int64_t* count);
// dlogits[r, :] = grad_loss / count * (softmax(logits[r, :]) - onehot(targets[r]));
// zero for ignored rows. lse from the forward pass (null: recomputed). dlogits
// may equal logits (in place).
Status cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse,
                              int64_t n, int64_t vocab, float grad_loss, float* dlogits);

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
Status rmsnorm_forward(const float* x, const float* gain, int64_t rows, int64_t dim, float eps,
                       float* y, float* rstd);
Status rmsnorm_backward(const float* dy, const float* x, const float* gain, const float* rstd,
                        int64_t rows, int64_t dim, float eps, float* dx, float* dgain,
                        bool accumulate);
Status swiglu_forward(const float* gate, const float* up, int64_t rows, int64_t ffn, int64_t ld_in,
                      float* h);
Status swiglu_backward(const float* dh, const float* gate, const float* up, int64_t rows,
                       int64_t ffn, int64_t ld_in, float* dgate, float* dup);
Status rope_apply(const float* x, const int32_t* positions, int64_t tokens, int64_t heads,
                  int64_t head_dim, float theta, bool inverse, float* out);
Status embedding_forward(const float* table, int64_t vocab, int64_t dim, const int32_t* ids,
                         int64_t n, float* out);
Status embedding_backward(const float* dout, const int32_t* ids, int64_t n, int64_t vocab,
                          int64_t dim, float* dtable, bool accumulate);
Status cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                             float* loss, float* lse, int64_t* count);
Status cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse,
                              int64_t n, int64_t vocab, float grad_loss, float* dlogits);
}  // namespace cuda

}  // namespace vp
