// vp/attention.h — fused scaled-dot-product attention, forward and backward.
//
// Layout as FlashAttention's varlen API (docs/attention.md):
//   q    [totalQ, H,   D]      k, v  [totalK, Hkv, D]      H % Hkv == 0, D <= 256
//   out  [totalQ, H,   D]      lse   [H, totalQ] (float32, natural log)
// Sequences are delimited by cumulative lengths (host int32 arrays of B+1
// entries starting at 0). Query head h reads KV head h / (H / Hkv). With
// `causal`, query row i of a sequence (Tq rows, Tk keys) sees the keys
// j <= i + (Tk - Tq): the mask is aligned to the bottom-right corner. A row that
// sees no key gets 0 in `out` and -Infinity in `lse`.
//
// The backward takes dout, the forward's inputs and its out/lse, and writes
// dq [totalQ, H, D], dk, dv [totalK, Hkv, D]. Neither direction materializes a
// T x T matrix: the CPU path keeps O(threads * block^2 + tokens * H) scratch.
//
// CPU: float32, FlashAttention-2 tiling with an online softmax, threaded over
// (sequence, head, query block) in the forward and (sequence, KV head, key block
// range) in the backward. CUDA: float32, bfloat16 or float16 tensors (all of
// q, k, v, out, dout, dq, dk, dv in one dtype; lse always float32), float32
// accumulation, tensor cores for the 16-bit types.
#pragma once

#include <cstdint>
#include <optional>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vp {

// The largest head dimension D that attention accepts (both devices; the CUDA
// kernels pad D to 32, 64, 128 or 256). The addon exports it as limits.maxHeadDim.
constexpr int64_t kAttentionMaxHeadDim = 256;

struct AttentionOptions {
  // Host pointers to B+1 cumulative lengths each, or null. Neither: one sequence
  // of all Q rows against one of all K rows. Only cu_seqlens_q: K uses the same
  // lengths (totalK must equal totalQ).
  const int32_t* cu_seqlens_q = nullptr;
  const int32_t* cu_seqlens_k = nullptr;
  int64_t batch = 0;  // B, the number of sequences (entries - 1) when cu_seqlens are given
  bool causal = false;
  std::optional<float> scale;  // default 1/sqrt(D)
  int threads = 0;             // CPU threads; 0 = the pool's size
};

// Forward: writes out and lse.
Status attention(const TensorView& q, const TensorView& k, const TensorView& v,
                 const AttentionOptions& opts, const TensorView& out, const TensorView& lse);

// Backward: writes dq, dk, dv from dout and the forward's out and lse.
Status attention_backward(const TensorView& dout, const TensorView& q, const TensorView& k,
                          const TensorView& v, const TensorView& out, const TensorView& lse,
                          const AttentionOptions& opts, const TensorView& dq, const TensorView& dk,
                          const TensorView& dv);

// The shape of a validated call, shared by the CPU and CUDA implementations.
struct AttentionProblem {
  int64_t total_q = 0, total_k = 0;
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t batch = 1;
  const int32_t* cu_q = nullptr;  // host, batch + 1 entries (never null after validation)
  const int32_t* cu_k = nullptr;
  bool causal = false;
  float scale = 1.0f;
  int threads = 0;
};

namespace cpu {
// The CPU kernels (validated arguments; float32 host memory).
Status attention_forward(const AttentionProblem& p, const float* q, const float* k, const float* v,
                         float* out, float* lse);
Status attention_backward(const AttentionProblem& p, const float* dout, const float* q,
                          const float* k, const float* v, const float* out, const float* lse,
                          float* dq, float* dk, float* dv);
// Scratch the CPU kernels allocate for a problem (bytes, both directions' maximum).
size_t attention_workspace_bytes(const AttentionProblem& p, bool backward);
}  // namespace cpu

namespace cuda {
// The CUDA kernels (validated arguments; device memory of one dtype; lse float32).
// Available only in CUDA builds; otherwise they report why not.
Status attention_forward(const AttentionProblem& p, DType dtype, const void* q, const void* k,
                         const void* v, void* out, float* lse);
Status attention_backward(const AttentionProblem& p, DType dtype, const void* dout, const void* q,
                          const void* k, const void* v, const void* out, const float* lse, void* dq,
                          void* dk, void* dv);
}  // namespace cuda

}  // namespace vp
