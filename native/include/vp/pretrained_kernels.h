// vp/pretrained_kernels.h — the device-side building blocks that the pretrained
// models (lib/pretrained/, Hugging Face Llama / Qwen2 decoders and SigLIP / CLIP
// vision towers) compose on CUDA besides the op families' kernels: vector
// arithmetic, bias rows, row gathers and scatter-adds, embedding lookups of a
// float32 or bfloat16 table, RoPE with a precomputed cos/sin table (Llama 3
// frequency scaling), and the KV-cache decode attention.
//
// Every float array is a DEVICE pointer. Index arrays (rows, ids, positions,
// base/nkeys) are HOST arrays: each is checked against its bound on the host
// (OutOfRange naming it, nothing written) and copied into the scratch pool
// (cuda/scratch_pool.h) before the kernel runs, so a bad index can never reach
// a kernel. Implemented in cuda/pretrained.cu; a CPU-only build's stand-ins
// (native/ops/pretrained/pretrained_no_cuda.cpp) return Status::Unavailable.
// Reductions run in a fixed order (deterministic), as in vp/model_kernels.h.
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp::cuda {

// y[i] += alpha · x[i], i < n.
Status axpy(float* y, const float* x, float alpha, int64_t n);
// x[i] *= alpha.
Status scale(float* x, float alpha, int64_t n);
// y[i] *= x[i] (a dropout mask).
Status mul_inplace(float* y, const float* x, int64_t n);
// y[r, j] += b[j] for r < rows, j < cols.
Status add_bias_rows(float* y, const float* b, int64_t rows, int64_t cols);
// out[i, :] = src[rows[i], :] for i < n; rows[i] in [0, src_rows).
Status gather_rows(const float* src, int64_t src_rows, const int32_t* rows, int64_t n, int64_t d, float* out);
// dst[rows[i], :] += src[i, :] for i = 0, 1, ..., n-1 in order; rows[i] in [0, dst_rows).
Status scatter_add_rows(const float* src, const int32_t* rows, int64_t n, int64_t d, float* dst, int64_t dst_rows);
// out[i, :] = table[ids[i], :] widened to float32; table float32 or (bf16) bfloat16 bits; ids in [0, vocab).
Status embedding_lookup(const void* table, bool bf16, int64_t vocab, int64_t d, const int32_t* ids, int64_t n,
                        float* out);
// dtable[v, :] (+)= Σ dout[i, :] over ids[i] == v, i ascending (vp::cuda::embedding_backward).
Status embedding_grad(const float* dout, const int32_t* ids, int64_t n, int64_t vocab, int64_t d, float* dtable,
                      bool accumulate);
// RoPE of x [tokens, heads, head_dim] at positions (each in [0, table_positions)) from a host
// table of cos / sin [table_positions, head_dim/2] (float32): pairs (i, i + head_dim/2) rotate
// by the table's angle (its negative when inverse). out may equal x.
Status rope_table(const float* x, const int32_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
                  const float* cos_table, const float* sin_table, int64_t table_positions, bool inverse, float* out);
// RoPE with angle pos · theta^(-2i/head_dim) (vp::cuda::rope_apply), host positions.
Status rope_theta(const float* x, const int32_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
                  float theta, bool inverse, float* out);
// One query row per sequence against its cached keys (vp::cuda::decode_attention): q, out
// [n, heads·head_dim]; kcache, vcache [cache_rows, kv_heads·head_dim]; row i reads cache rows
// [base[i], base[i] + nkeys[i]), which must lie inside the cache; max over nkeys sizes the scratch.
Status decode_attention_rows(const float* q, const float* kcache, const float* vcache, int64_t cache_rows,
                             const int32_t* base, const int32_t* nkeys, int64_t n, int64_t heads, int64_t kv_heads,
                             int64_t head_dim, float scale_, float* out);

}  // namespace vp::cuda
