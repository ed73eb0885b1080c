// The VideoLM's backend seam: buffers that live on the model's device and one
// dispatcher (ModelOps) that runs each step of the model on the CPU kernels
// (vp::) or the CUDA kernels (vp::cuda::, same signatures, device pointers).
// The model's control logic (videolm.cpp, videolm_generate.cpp) is written
// once against these two, so the CPU and CUDA models share every decision:
// packing, which rows go to the head, loss and coefficient arithmetic (on the
// host, in double), sampling, the optimizer's schedule and clipping.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "vp/attention.h"
#include "vp/cuda.h"
#include "vp/gemm.h"
#include "vp/gemm_bf16.h"
#include "vp/layers.h"
#include "vp/model_kernels.h"
#include "vp/optim.h"
#include "vp/status.h"
#include "vp/tensor.h"

namespace vp::detail {

// n elements of T on the CPU (a std::vector) or on the GPU (cudaMalloc). Growing
// reallocates: on the GPU the old contents are then lost (callers write before
// they read; `zero` when they need zeros).
template <typename T>
class Buf {
 public:
  Buf() = default;
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Buf(Buf&& o) noexcept { swap(o); }
  Buf& operator=(Buf&& o) noexcept {
    swap(o);
    return *this;
  }
  ~Buf() { release(); }

  Status resize(Device dev, int64_t n) {
    if (dev != dev_) {
      release();
      dev_ = dev;
    }
    if (dev == Device::kCPU) {
      try {
        host_.resize(static_cast<size_t>(n));
      } catch (const std::bad_alloc&) {
        return Status::Internal("VideoLM: out of host memory for " + std::to_string(n) + " elements");
      }
      ptr_ = host_.data();
    } else if (n > cap_) {
      cuda::free_device(ptr_);
      ptr_ = nullptr;
      cap_ = 0;
      void* p = nullptr;
      VP_RETURN_IF_ERROR(cuda::malloc_device(&p, static_cast<size_t>(n) * sizeof(T)));
      ptr_ = static_cast<T*>(p);
      cap_ = n;
    }
    n_ = n;
    return Status::Ok();
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  int64_t size() const { return n_; }
  Device device() const { return dev_; }

 private:
  void release() {
    if (dev_ == Device::kCUDA) cuda::free_device(ptr_);
    std::vector<T>().swap(host_);
    ptr_ = nullptr;
    n_ = cap_ = 0;
  }
  void swap(Buf& o) noexcept {
    std::swap(dev_, o.dev_);
    std::swap(ptr_, o.ptr_);
    std::swap(n_, o.n_);
    std::swap(cap_, o.cap_);
    host_.swap(o.host_);
  }
  Device dev_ = Device::kCPU;
  T* ptr_ = nullptr;
  int64_t n_ = 0, cap_ = 0;
  std::vector<T> host_;
};

// Runs the same-named CPU or CUDA kernel (identical signatures).
#define VP_MODEL_OP(name)                                                           \
  template <typename... A>                                                          \
  Status name(A&&... a) const {                                                     \
    return cuda() ? ::vp::cuda::name(std::forward<A>(a)...) : ::vp::name(std::forward<A>(a)...); \
  }

class ModelOps {
 public:
  explicit ModelOps(Device dev = Device::kCPU) : dev_(dev) {}
  Device device() const { return dev_; }
  bool cuda() const { return dev_ == Device::kCUDA; }
  // Mixed precision on the CPU: every product through vp::gemm_f32_via_bf16.
  void set_bf16_products(bool on) { bf16_ = on; }
  bool bf16_products() const { return bf16_; }

  template <typename T>
  Status alloc(Buf<T>& b, int64_t n) const { return b.resize(dev_, n); }
  Status alloc_all(std::initializer_list<std::pair<Buf<float>*, int64_t>> bufs) const {
    for (const auto& [b, n] : bufs) VP_RETURN_IF_ERROR(b->resize(dev_, n));
    return Status::Ok();
  }
  // b = n zeros.
  Status zeros(Buf<float>& b, int64_t n) const {
    VP_RETURN_IF_ERROR(b.resize(dev_, n));
    return zero(b.data(), n);
  }
  // b = a copy of n host elements.
  template <typename T>
  Status upload(Buf<T>& b, const T* host, int64_t n) const {
    VP_RETURN_IF_ERROR(b.resize(dev_, n));
    return to_device(b.data(), host, n);
  }
  template <typename T>
  Status upload(Buf<T>& b, const std::vector<T>& host) const {
    return upload(b, host.data(), static_cast<int64_t>(host.size()));
  }
  // n elements from host memory into this device's memory, and back.
  template <typename T>
  Status to_device(T* dst, const T* host, int64_t n) const {
    if (n <= 0) return Status::Ok();
    if (!cuda()) {
      std::memcpy(dst, host, static_cast<size_t>(n) * sizeof(T));
      return Status::Ok();
    }
    return cuda::copy_to_device(dst, host, static_cast<size_t>(n) * sizeof(T));
  }
  template <typename T>
  Status to_host(T* host, const T* src, int64_t n) const {
    if (n <= 0) return Status::Ok();
    if (!cuda()) {
      std::memcpy(host, src, static_cast<size_t>(n) * sizeof(T));
      return Status::Ok();
    }
    return cuda::copy_to_host(host, src, static_cast<size_t>(n) * sizeof(T));
  }
  Status copy(float* dst, const float* src, int64_t n) const {
    if (n <= 0) return Status::Ok();
    if (!cuda()) {
      std::memmove(dst, src, static_cast<size_t>(n) * sizeof(float));
      return Status::Ok();
    }
    return cuda::copy_device_to_device(dst, src, static_cast<size_t>(n) * sizeof(float));
  }
  Status zero(float* x, int64_t n) const {
    if (n <= 0) return Status::Ok();
    if (!cuda()) {
      std::memset(x, 0, static_cast<size_t>(n) * sizeof(float));
      return Status::Ok();
    }
    return cuda::fill_zero(x, n);
  }

  // C[M,N] (beta)= A[M,K] · B[N,K]^T
  Status mm_nt(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* c, float beta) const {
    GemmArgs g;
    g.trans_b = true;
    g.m = m; g.n = n; g.k = k;
    g.a = a; g.lda = k; g.b = b; g.ldb = k;
    g.c = c; g.ldc = n; g.beta = beta;
    return gemm(g);
  }
  // C[M,N] (beta)= A[M,K] · B[K,N]
  Status mm_nn(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* c, float beta) const {
    GemmArgs g;
    g.m = m; g.n = n; g.k = k;
    g.a = a; g.lda = k; g.b = b; g.ldb = n;
    g.c = c; g.ldc = n; g.beta = beta;
    return gemm(g);
  }
  // C[M,N] += A[K,M]^T · B[K,N]   (weight gradients: dW[out,in] += dY^T X)
  Status mm_tn_acc(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* c) const {
    if (k == 0) return Status::Ok();
    GemmArgs g;
    g.trans_a = true;
    g.m = m; g.n = n; g.k = k;
    g.a = a; g.lda = m; g.b = b; g.ldb = n;
    g.c = c; g.ldc = n; g.beta = 1.0f;
    return gemm(g);
  }

  // Causal attention over packed rows [N, heads, D] (k, v [N, kv_heads, D]); cu_seqlens on the host.
  Status attention(const float* q, const float* k, const float* v, int64_t N, int64_t H, int64_t Hkv, int64_t D,
                   const std::vector<int32_t>& cu, float* out, float* lse) const {
    return ::vp::attention(view(q, {N, H, D}), view(k, {N, Hkv, D}), view(v, {N, Hkv, D}), attn_opts(cu),
                           view(out, {N, H, D}), view(lse, {H, N}));
  }
  Status attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* out,
                            const float* lse, int64_t N, int64_t H, int64_t Hkv, int64_t D,
                            const std::vector<int32_t>& cu, float* dq, float* dk, float* dv) const {
    return ::vp::attention_backward(view(dout, {N, H, D}), view(q, {N, H, D}), view(k, {N, Hkv, D}),
                                    view(v, {N, Hkv, D}), view(out, {N, H, D}), view(lse, {H, N}), attn_opts(cu),
                                    view(dq, {N, H, D}), view(dk, {N, Hkv, D}), view(dv, {N, Hkv, D}));
  }

  // Sum of squares in double (fixed-order blocks on both backends).
  Status sum_squares(const float* x, int64_t n, double* out) const {
    if (cuda()) return cuda::sum_squares(x, n, out);
    *out = ::vp::sum_squares(x, n);
    return Status::Ok();
  }

  VP_MODEL_OP(rmsnorm_forward)
  VP_MODEL_OP(rmsnorm_backward)
  VP_MODEL_OP(swiglu_forward)
  VP_MODEL_OP(swiglu_backward)
  VP_MODEL_OP(rope_apply)
  VP_MODEL_OP(add_inplace)
  VP_MODEL_OP(patchify_u8)
  VP_MODEL_OP(patchify_f32)
  VP_MODEL_OP(adamw_step)
  VP_MODEL_OP(rows_gather)
  VP_MODEL_OP(rows_scatter_add)
  VP_MODEL_OP(rows_csr_sum)
  VP_MODEL_OP(embed_rows)
  VP_MODEL_OP(vision_add_pos)
  VP_MODEL_OP(vision_pos_backward)
  VP_MODEL_OP(row_lse_target)
  VP_MODEL_OP(softmax_xent_grad)
  VP_MODEL_OP(decode_attention)

 private:
  Status gemm(const GemmArgs& g) const {
    if (g.m == 0 || g.n == 0) return Status::Ok();
    if (cuda()) return cuda::sgemm(g);
    return bf16_ ? gemm_f32_via_bf16(g) : sgemm(g);
  }
  TensorView view(const float* p, std::initializer_list<int64_t> dims) const {
    return TensorView(const_cast<float*>(p), dims, DType::kFloat32, dev_);
  }
  static AttentionOptions attn_opts(const std::vector<int32_t>& cu) {
    AttentionOptions ao;
    ao.cu_seqlens_q = cu.data();
    ao.batch = static_cast<int64_t>(cu.size()) - 1;
    ao.causal = true;
    return ao;
  }
  Device dev_;
  bool bf16_ = false;
};

#undef VP_MODEL_OP

}  // namespace vp::detail
