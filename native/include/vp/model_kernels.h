// vp/model_kernels.h — the small row and vector kernels the built-in VideoLM
// needs besides vp/layers.h, vp/attention.h and vp/gemm.h (float32).
//
// Each exists twice with one signature: vp:: on the CPU (host pointers,
// threaded through vp::parallel_for) and vp::cuda:: on the GPU (DEVICE pointers
// for every array, index arrays included; a CPU-only build's stubs return
// Status::Unavailable). The model computes and checks every index on the host
// before it uploads it, so these kernels do not re-validate indices: they are
// internal building blocks, not user-facing ops.
//
// Conventions as in vp/layers.h: rows are tokens, `d` is the row width,
// row-major. Every reduction runs in a fixed order (a row's contributions are
// added in increasing index order), never with float atomics, so results are
// deterministic on both backends.
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp {

// out[i, :] = src[rows[i], :] for i < n.
Status rows_gather(const float* src, const int32_t* rows, int64_t n, int64_t d, float* out);
// dst[rows[i], :] += src[i, :] for i = 0, 1, ..., n-1 in that order (rows may repeat).
Status rows_scatter_add(const float* src, const int32_t* rows, int64_t n, int64_t d, float* dst);
// dst[g, :] (+)= sum over k in [start[g], start[g+1]) of src[order[k], :], k ascending,
// for g < groups (the CSR form of a many-to-one map). Overwrites when !accumulate.
Status rows_csr_sum(const float* src, const int32_t* start, const int32_t* order, int64_t groups,
                    int64_t d, float* dst, bool accumulate);
// The decoder's input rows: out[r, :] = from[r] >= 0 ? vis[from[r], :] : table[-from[r] - 1, :].
Status embed_rows(const float* vis, const float* table, const int32_t* from, int64_t n, int64_t d,
                  float* out);
// Vision: vis[r, :] += bias + frame_pos[(r / P) % frames, :] + patch_pos[r % P, :] (bias and frame_pos
// may be null: the VideoLM adds frame positions after packing, by the slot a frame fills).
Status vision_add_pos(float* vis, const float* bias, const float* frame_pos, const float* patch_pos,
                      int64_t n, int64_t patches_per_frame, int64_t frames, int64_t d);
// Its adjoint, ACCUMULATED into the gradients: dbias (may be null) += column sums of
// dvis, dframe_pos[f] += rows with (r / P) % frames == f, dpatch_pos[q] += rows with r % P == q
// (dbias and dframe_pos may be null: not computed).
Status vision_pos_backward(const float* dvis, int64_t n, int64_t patches_per_frame, int64_t frames,
                           int64_t d, float* dbias, float* dframe_pos, float* dpatch_pos);
// Per row of logits [rows, vocab]: lse[r] = log-sum-exp, target_logit[r] = logits[r, targets[r]]
// (targets in [0, vocab)).
Status row_lse_target(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                      float* lse, float* target_logit);
// In place: logits[r, :] = coef[r] * (softmax(logits[r, :]) - onehot(targets[r])), softmax
// from the forward's lse.
Status softmax_xent_grad(float* logits, const int32_t* targets, const float* lse, const float* coef,
                         int64_t rows, int64_t vocab);
// One query row per sequence against its cached keys (generation): for row i and head h,
// out[i, h, :] = softmax_t(scale * <q[i, h, :], k[base[i] + t, h / (H / Hkv), :]>) · v[...]
// over t < nkeys[i]; a row with nkeys[i] == 0 gets zeros. q, out [n, H * D]; kcache, vcache
// rows of Hkv * D floats. max_keys >= every nkeys[i] (the CUDA kernel's scratch is
// n * H * max_keys floats): a count outside [0, max_keys] is OutOfRange on the CPU and
// NaN rows on CUDA (which never reads or writes beyond its scratch).
Status decode_attention(const float* q, const float* kcache, const float* vcache, const int32_t* base,
                        const int32_t* nkeys, int64_t n, int64_t heads, int64_t kv_heads,
                        int64_t head_dim, float scale, int64_t max_keys, float* out);

namespace cuda {
Status rows_gather(const float* src, const int32_t* rows, int64_t n, int64_t d, float* out);
Status rows_scatter_add(const float* src, const int32_t* rows, int64_t n, int64_t d, float* dst);
Status rows_csr_sum(const float* src, const int32_t* start, const int32_t* order, int64_t groups,
                    int64_t d, float* dst, bool accumulate);
Status embed_rows(const float* vis, const float* table, const int32_t* from, int64_t n, int64_t d,
                  float* out);
Status vision_add_pos(float* vis, const float* bias, const float* frame_pos, const float* patch_pos,
                      int64_t n, int64_t patches_per_frame, int64_t frames, int64_t d);
Status vision_pos_backward(const float* dvis, int64_t n, int64_t patches_per_frame, int64_t frames,
                           int64_t d, float* dbias, float* dframe_pos, float* dpatch_pos);
Status row_lse_target(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                      float* lse, float* target_logit);
Status softmax_xent_grad(float* logits, const int32_t* targets, const float* lse, const float* coef,
                         int64_t rows, int64_t vocab);
Status decode_attention(const float* q, const float* kcache, const float* vcache, const int32_t* base,
                        const int32_t* nkeys, int64_t n, int64_t heads, int64_t kv_heads,
                        int64_t head_dim, float scale, int64_t max_keys, float* out);
// The CUDA counterparts of vp/layers.h helpers the model uses.
Status add_inplace(float* y, const float* x, int64_t n);
Status fill_zero(float* x, int64_t n);
Status patchify_u8(const uint8_t* frames, int64_t num_frames, int64_t height, int64_t width,
                   int64_t patch, float* patches);
Status patchify_f32(const float* frames, int64_t num_frames, int64_t height, int64_t width,
                    int64_t patch, float* patches);
}  // namespace cuda

}  // namespace vp
