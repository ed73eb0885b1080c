// CUDA token log-probs (vp/logprobs.h): plain (the block-wide online
// log-sum-exp of row_lse.cuh per row) and through the output projection, chunked over the
// vocabulary: for each chunk of VC columns, the logits chunk (N × VC, float32)
// comes from a tiled GEMM (tensor cores through WMMA for bfloat16/float16
// inputs, float32 accumulation), a row kernel folds it into running
// max / sum-exp, and (backward) a second row kernel turns it into dlogits for
// the two gradient GEMMs. Nothing of size N×V is allocated; the chunk buffer
// is at most 64 MiB.
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernel_util.cuh"
#include "logprobs_common.cuh"
#include "row_lse.cuh"
#include "vp/logprobs.h"

#include "dtype.cuh"

namespace vp::cuda {
namespace detail {
namespace {

using dtype::from_f;
using dtype::to_f;

using namespace nvcuda;

// ---- element access ---------------------------------------------------------------------



template <typename T>
__device__ __forceinline__ T zero_of() {
  return from_f<T>(0.0f);
}

// ---- GEMM: tensor cores (16-bit inputs) -------------------------------------------------

constexpr int kBM = 64, kBN = 64, kBK = 32;

template <typename T>
__global__ void __launch_bounds__(128) gemm_wmma_kernel(int64_t M, int64_t N, int64_t K, const T* __restrict__ A,
                                                        int64_t lda, bool ta, const T* __restrict__ B, int64_t ldb,
                                                        bool tb, float* __restrict__ C, int64_t ldc, float alpha,
                                                        float beta) {
  __shared__ __align__(32) T As[kBM][kBK + 8];
  __shared__ __align__(32) T Bs[kBK][kBN + 8];
  __shared__ __align__(32) float Cs[kBM][kBN + 4];
  const int tid = threadIdx.x, warp = tid / 32;
  const int wr = warp / 2, wc = warp % 2;  // each warp: a 32 × 32 piece, 2 × 2 fragments
  const int64_t bm = static_cast<int64_t>(blockIdx.y) * kBM, bn = static_cast<int64_t>(blockIdx.x) * kBN;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    for (int idx = tid; idx < kBM * kBK; idx += 128) {
      // coalesced along whichever index is contiguous in memory
      const int i = ta ? idx % kBM : idx / kBK, kk = ta ? idx / kBM : idx % kBK;
      const int64_t gi = bm + i, gk = k0 + kk;
      As[i][kk] = (gi < M && gk < K) ? (ta ? A[gk * lda + gi] : A[gi * lda + gk]) : zero_of<T>();
    }
    for (int idx = tid; idx < kBK * kBN; idx += 128) {
      const int kk = tb ? idx % kBK : idx / kBN, j = tb ? idx / kBK : idx % kBN;
      const int64_t gk = k0 + kk, gj = bn + j;
      Bs[kk][j] = (gk < K && gj < N) ? (tb ? B[gj * ldb + gk] : B[gk * ldb + gj]) : zero_of<T>();
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &As[wr * 32 + i * 16][kk], kBK + 8);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &Bs[kk][wc * 32 + j * 16], kBN + 8);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&Cs[wr * 32 + i * 16][wc * 32 + j * 16], acc[i][j], kBN + 4, wmma::mem_row_major);
  __syncthreads();
  for (int idx = tid; idx < kBM * kBN; idx += 128) {
    const int i = idx / kBN, j = idx % kBN;
    const int64_t gi = bm + i, gj = bn + j;
    if (gi < M && gj < N) {
      float* c = C + gi * ldc + gj;
      *c = beta == 0.0f ? alpha * Cs[i][j] : alpha * Cs[i][j] + beta * *c;
    }
  }
}

// ---- GEMM: CUDA cores (float32 inputs) ----------------------------------------------------

constexpr int kFK = 16;

__global__ void __launch_bounds__(256) gemm_f32_kernel(int64_t M, int64_t N, int64_t K, const float* __restrict__ A,
                                                       int64_t lda, bool ta, const float* __restrict__ B, int64_t ldb,
                                                       bool tb, float* __restrict__ C, int64_t ldc, float alpha,
                                                       float beta) {
  __shared__ float As[kFK][kBM + 4];  // k-major
  __shared__ float Bs[kFK][kBN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t bm = static_cast<int64_t>(blockIdx.y) * kBM, bn = static_cast<int64_t>(blockIdx.x) * kBN;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kFK) {
    for (int idx = tid; idx < kBM * kFK; idx += 256) {
      const int i = ta ? idx % kBM : idx / kFK, kk = ta ? idx / kBM : idx % kFK;
      const int64_t gi = bm + i, gk = k0 + kk;
      As[kk][i] = (gi < M && gk < K) ? (ta ? A[gk * lda + gi] : A[gi * lda + gk]) : 0.0f;
    }
    for (int idx = tid; idx < kFK * kBN; idx += 256) {
      const int kk = tb ? idx % kFK : idx / kBN, j = tb ? idx / kFK : idx % kBN;
      const int64_t gk = k0 + kk, gj = bn + j;
      Bs[kk][j] = (gk < K && gj < N) ? (tb ? B[gj * ldb + gk] : B[gk * ldb + gj]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kFK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t gi = bm + ty + 16 * i, gj = bn + tx + 16 * j;
      if (gi < M && gj < N) {
        float* c = C + gi * ldc + gj;
        *c = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
      }
    }
}

template <typename T>
__global__ void convert_kernel(const float* __restrict__ in, T* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = from_f<T>(in[i]);
}

unsigned grid_for(int64_t n, int threads) {
  return static_cast<unsigned>(std::min<int64_t>((n + threads - 1) / threads, 65535));
}

// ---- row kernels ------------------------------------------------------------------------------

using kutil::warp_max;

// Fold a chunk of scaled logits (rows × vcur, float32) into running (m, s), one
// warp per row; capture target logits.
__global__ void lse_update_kernel(const float* __restrict__ L, int64_t ldl, int64_t rows, int64_t vcur, int64_t v0,
                                  const int32_t* __restrict__ targets, float* __restrict__ m, float* __restrict__ s,
                                  float* __restrict__ tl) {
  const int lane = threadIdx.x % 32;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows) return;
  const float* x = L + r * ldl;
  const rowlse::State chunk = rowlse::warp_merge(rowlse::fold(x, vcur, 1.0f, lane, 32));
  if (lane == 0) {
    const rowlse::State st = rowlse::merge({m[r], s[r], isnan(s[r])}, chunk);
    m[r] = st.m;
    s[r] = st.bad ? NAN : st.s;
    const int64_t t = static_cast<int64_t>(targets[r]) - v0;
    if (t >= 0 && t < vcur) tl[r] = x[t];
  }
}

__global__ void init_stats_kernel(float* m, float* s, float* tl, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    m[i] = -INFINITY;
    s[i] = 0.0f;
    tl[i] = NAN;
  }
}

__global__ void finalize_kernel(const float* m, const float* s, const float* tl, float* logp, float* lse, int64_t n,
                                unsigned long long* bad) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float l = rowlse::lse({m[i], s[i], false});
    const float lp = tl[i] - l;
    lse[i] = l;
    logp[i] = lp;
    if (!isfinite(l) || !isfinite(lp)) atomicMin(bad, static_cast<unsigned long long>(i));
  }
}

// D[r, j] = g[r] · (1[v0 + j == target] − exp(L[r, j] − lse[r])) · scale, in dtype T.
template <typename T>
__global__ void softmax_grad_kernel(const float* __restrict__ L, int64_t ldl, int64_t rows, int64_t vcur, int64_t v0,
                                    const int32_t* __restrict__ targets, const float* __restrict__ lse,
                                    const float* __restrict__ g, float scale, T* __restrict__ D, int64_t ldd) {
  const int64_t total = rows * vcur;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / vcur, j = idx % vcur;
    const float gr = g[r] * scale;
    float val = rowlse::scaled_softmax(L[r * ldl + j], lse[r], -gr);
    if (v0 + j == targets[r]) val += gr;
    D[r * ldd + j] = from_f<T>(val);
  }
}

__global__ void absmax_kernel(const float* x, int64_t n, unsigned int* out_bits) {
  float mx = 0.0f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    mx = fmaxf(mx, fabsf(x[i]));
  mx = warp_max(mx);
  if (threadIdx.x % 32 == 0) atomicMax(out_bits, __float_as_uint(mx));  // non-negative floats order as uints
}

// ---- plain token log-probs -----------------------------------------------------------------

template <typename T>
__global__ void token_logprobs_kernel(const T* __restrict__ logits, int64_t v, const int32_t* __restrict__ targets,
                                      float scale, float* __restrict__ out, unsigned long long* bad_row) {
  const int64_t r = blockIdx.x;
  const rowlse::State st = rowlse::block_row(logits + r * v, v, scale);
  if (threadIdx.x == 0) {
    const int32_t t = targets[r];
    const float l = rowlse::lse(st);
    const float lp = (t >= 0 && t < v) ? to_f<T>(logits[r * v + t]) * scale - l : NAN;
    out[r] = lp;
    if (!isfinite(l) || !isfinite(lp)) atomicMin(bad_row, static_cast<unsigned long long>(r));
  }
}

template <typename T>
__global__ void token_logprobs_backward_kernel(const float* __restrict__ dlogp, const T* __restrict__ logits, int64_t v,
                                               const int32_t* __restrict__ targets, float scale, T* __restrict__ dlogits,
                                               unsigned long long* bad_row) {
  const int64_t r = blockIdx.x;
  const T* x = logits + r * v;
  const float l = rowlse::lse(rowlse::block_row(x, v, scale));
  if (!isfinite(l)) {
    if (threadIdx.x == 0) atomicMin(bad_row, static_cast<unsigned long long>(r));
    return;
  }
  const float g = dlogp[r] * scale;
  const int32_t t = targets[r];
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    float val = rowlse::scaled_softmax(to_f<T>(x[j]) * scale, l, -g);
    if (j == t) val += g;
    dlogits[r * v + j] = from_f<T>(val);
  }
}

Status bad_row_status(const char* fn, unsigned long long* dev_bad, int64_t n) {
  unsigned long long bad = 0;
  VP_CUDA_TRY(cudaMemcpy(&bad, dev_bad, sizeof bad, cudaMemcpyDeviceToHost), fn);
  if (bad < static_cast<unsigned long long>(n))
    return Status::OutOfRange(std::string(fn) + ": the log-sum-exp of row " + std::to_string(bad) +
                              " is not finite (NaN or Infinity in the inputs, or an overflow)");
  return Status::Ok();
}

Status new_bad_flag(DeviceScratch& s) {
  VP_RETURN_IF_ERROR(s.alloc(sizeof(unsigned long long)));
  return cuda_status(cudaMemset(s.as<void>(), 0xff, sizeof(unsigned long long)), "cudaMemset");
}

template <typename F>
Status dispatch_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::kFloat32: return f(float{});
    case DType::kFloat16: return f(__half{});
    case DType::kBFloat16: return f(__nv_bfloat16{});
    default: return Status::Invalid("CUDA log-probs: unsupported dtype");
  }
}

int64_t chunk_columns(int64_t n, int64_t v) {
  // ≤ 16 Mi floats (64 MiB) per chunk buffer, whole 64-column GEMM tiles.
  int64_t vc = (int64_t{16} << 20) / std::max<int64_t>(n, 1);
  vc = std::max<int64_t>(64, vc / 64 * 64);
  return std::min(vc, (v + 63) / 64 * 64);
}

}  // namespace

Status gemm_f32acc(DType dt, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda, bool ta, const void* b,
                   int64_t ldb, bool tb, float* c, int64_t ldc, float alpha, float beta, cudaStream_t stream) {
  if (m == 0 || n == 0) return Status::Ok();
  const dim3 grid(static_cast<unsigned>((n + kBN - 1) / kBN), static_cast<unsigned>((m + kBM - 1) / kBM));
  if (grid.y > 65535) return Status::Invalid("CUDA GEMM: too many rows for one launch");
  switch (dt) {
    case DType::kFloat32:
      gemm_f32_kernel<<<grid, 256, 0, stream>>>(m, n, k, static_cast<const float*>(a), lda, ta,
                                                 static_cast<const float*>(b), ldb, tb, c, ldc, alpha, beta);
      break;
    case DType::kFloat16:
      gemm_wmma_kernel<__half><<<grid, 128, 0, stream>>>(m, n, k, static_cast<const __half*>(a), lda, ta,
                                                          static_cast<const __half*>(b), ldb, tb, c, ldc, alpha, beta);
      break;
    case DType::kBFloat16:
      gemm_wmma_kernel<__nv_bfloat16><<<grid, 128, 0, stream>>>(m, n, k, static_cast<const __nv_bfloat16*>(a), lda, ta,
                                                                 static_cast<const __nv_bfloat16*>(b), ldb, tb, c, ldc,
                                                                 alpha, beta);
      break;
    default: return Status::Invalid("CUDA GEMM: unsupported dtype");
  }
  return cuda_status(cudaGetLastError(), "CUDA GEMM launch");
}

Status convert_from_f32(DType dt, const float* in, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return Status::Ok();
  const unsigned grid = grid_for(n, 256);
  switch (dt) {
    case DType::kFloat32:
      return cuda_status(cudaMemcpyAsync(out, in, n * sizeof(float), cudaMemcpyDeviceToDevice, stream), "cudaMemcpy");
    case DType::kFloat16: convert_kernel<__half><<<grid, 256, 0, stream>>>(in, static_cast<__half*>(out), n); break;
    case DType::kBFloat16:
      convert_kernel<__nv_bfloat16><<<grid, 256, 0, stream>>>(in, static_cast<__nv_bfloat16*>(out), n);
      break;
    default: return Status::Invalid("convert: unsupported dtype");
  }
  return cuda_status(cudaGetLastError(), "convert launch");
}

Status linear_forward(const LinearProblem& p, float* logp, float* lse) {
  const int64_t n = p.n, v = p.v, d = p.d;
  if (n == 0) return Status::Ok();
  const int64_t vc = chunk_columns(n, v);
  const size_t esz = dtype_size(p.dtype);
  VP_RETURN_IF_ERROR(grid_status(p.fn, (n + 7) / 8));  // lse_update_kernel: 8 rows per block
  DeviceScratch chunk, stats, bad;
  VP_RETURN_IF_ERROR(chunk.alloc(static_cast<size_t>(n * vc) * sizeof(float)));
  VP_RETURN_IF_ERROR(stats.alloc(static_cast<size_t>(3 * n) * sizeof(float)));
  VP_RETURN_IF_ERROR(new_bad_flag(bad));
  float *m = stats.as<float>(), *s = m + n, *tl = s + n;
  init_stats_kernel<<<grid_for(n, 256), 256>>>(m, s, tl, n);
  for (int64_t v0 = 0; v0 < v; v0 += vc) {
    const int64_t vcur = std::min(vc, v - v0);
    const void* wc = static_cast<const char*>(p.weight) + static_cast<size_t>(v0 * d) * esz;
    VP_RETURN_IF_ERROR(gemm_f32acc(p.dtype, n, vcur, d, p.hidden, d, false, wc, d, true, chunk.as<float>(), vc,
                                   p.inv_temperature, 0.0f));
    lse_update_kernel<<<static_cast<unsigned>((n + 7) / 8), 256>>>(chunk.as<float>(), vc, n, vcur, v0, p.targets, m, s, tl);
    VP_CUDA_TRY(cudaGetLastError(), p.fn);
  }
  finalize_kernel<<<grid_for(n, 256), 256>>>(m, s, tl, logp, lse, n, bad.as<unsigned long long>());
  VP_CUDA_TRY(cudaGetLastError(), p.fn);
  return bad_row_status(p.fn, bad.as<unsigned long long>(), n);
}

Status linear_backward(const LinearProblem& p, const float* dlogp, const float* lse, void* dhidden, void* dweight) {
  const int64_t n = p.n, v = p.v, d = p.d;
  const size_t esz = dtype_size(p.dtype);
  if (n == 0 || d == 0) {
    if (v * d > 0) VP_CUDA_TRY(cudaMemset(dweight, 0, static_cast<size_t>(v * d) * esz), "cudaMemset");
    return Status::Ok();
  }
  const int64_t vc = chunk_columns(n, v);
  const bool f32 = p.dtype == DType::kFloat32;
  // 16-bit dlogits are scaled to |D| <= 1 (float16 would underflow otherwise) and unscaled by the GEMMs' alpha.
  float gmax = 1.0f;
  DeviceScratch chunk, dbuf, acc, flag;
  if (!f32) {
    VP_RETURN_IF_ERROR(flag.alloc(sizeof(unsigned int)));
    VP_CUDA_TRY(cudaMemset(flag.as<void>(), 0, sizeof(unsigned int)), "cudaMemset");
    absmax_kernel<<<grid_for(n, 256), 256>>>(dlogp, n, flag.as<unsigned int>());
    unsigned int bits = 0;
    VP_CUDA_TRY(cudaMemcpy(&bits, flag.as<void>(), sizeof bits, cudaMemcpyDeviceToHost), p.fn);
    std::memcpy(&gmax, &bits, sizeof gmax);
    gmax *= p.inv_temperature;
    if (!(gmax > 0.0f) || !std::isfinite(gmax)) gmax = 1.0f;
  }
  VP_RETURN_IF_ERROR(chunk.alloc(static_cast<size_t>(n * vc) * sizeof(float)));
  VP_RETURN_IF_ERROR(dbuf.alloc(static_cast<size_t>(n * vc) * esz));
  // float32 accumulators for 16-bit outputs; float32 outputs accumulate in place.
  float* dh = static_cast<float*>(dhidden);
  float* dw = static_cast<float*>(dweight);
  if (!f32) {
    VP_RETURN_IF_ERROR(acc.alloc(static_cast<size_t>((n + v) * d) * sizeof(float)));
    dh = acc.as<float>();
    dw = dh + n * d;
  }
  // g = dlogp / T, folded into the softmax-gradient kernel's scale.
  const float dscale = p.inv_temperature / gmax;
  for (int64_t v0 = 0; v0 < v; v0 += vc) {
    const int64_t vcur = std::min(vc, v - v0);
    const void* wc = static_cast<const char*>(p.weight) + static_cast<size_t>(v0 * d) * esz;
    VP_RETURN_IF_ERROR(gemm_f32acc(p.dtype, n, vcur, d, p.hidden, d, false, wc, d, true, chunk.as<float>(), vc,
                                   p.inv_temperature, 0.0f));
    const unsigned grid = grid_for(n * vcur, 256);
    Status st = dispatch_dtype(p.dtype, [&](auto tag) -> Status {
      using T = decltype(tag);
      softmax_grad_kernel<T><<<grid, 256>>>(chunk.as<float>(), vc, n, vcur, v0, p.targets, lse, dlogp, dscale,
                                            dbuf.as<T>(), vc);
      return cuda_status(cudaGetLastError(), p.fn);
    });
    VP_RETURN_IF_ERROR(st);
    // dH (+)= gmax · D · W[chunk];  dW[chunk] = gmax · Dᵀ · H
    VP_RETURN_IF_ERROR(gemm_f32acc(p.dtype, n, d, vcur, dbuf.as<void>(), vc, false, wc, d, false, dh, d, gmax,
                                   v0 == 0 ? 0.0f : 1.0f));
    VP_RETURN_IF_ERROR(gemm_f32acc(p.dtype, vcur, d, n, dbuf.as<void>(), vc, true, p.hidden, d, false, dw + v0 * d, d,
                                   gmax, 0.0f));
  }
  if (!f32) {
    VP_RETURN_IF_ERROR(convert_from_f32(p.dtype, dh, dhidden, n * d));
    VP_RETURN_IF_ERROR(convert_from_f32(p.dtype, dw, dweight, v * d));
  }
  return cuda_status(cudaDeviceSynchronize(), p.fn);
}

}  // namespace detail

// ---- the vp::cuda entry points (validated by vp::) ------------------------------------------------

using detail::cuda_status;
using detail::DeviceScratch;

namespace {
// The plain kernels: one block per row of logits [n, v] and a "first bad row"
// flag; launch(T{}, n, v, 1 / temperature, flag) launches for the dtype.
template <typename F>
Status per_row(const char* fn, const TensorView& logits, const LogprobsOptions& opts, F&& launch) {
  const int64_t n = logits.shape[0], v = logits.shape[1];
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(detail::grid_status(fn, n));  // one block per row
  DeviceScratch bad;
  VP_RETURN_IF_ERROR(detail::new_bad_flag(bad));
  const float scale = 1.0f / opts.temperature;
  VP_RETURN_IF_ERROR(detail::dispatch_dtype(logits.dtype, [&](auto tag) -> Status {
    launch(tag, n, v, scale, bad.as<unsigned long long>());
    return cuda_status(cudaGetLastError(), fn);
  }));
  return detail::bad_row_status(fn, bad.as<unsigned long long>(), n);
}
}  // namespace

Status token_logprobs(const TensorView& logits, const TensorView& targets, const TensorView& out,
                      const LogprobsOptions& opts) {
  return per_row("tokenLogprobs", logits, opts, [&](auto tag, int64_t n, int64_t v, float scale, unsigned long long* bad) {
    using T = decltype(tag);
    detail::token_logprobs_kernel<T><<<static_cast<unsigned>(n), 256>>>(logits.as<T>(), v, targets.as<int32_t>(), scale,
                                                                         out.as<float>(), bad);
  });
}

Status token_logprobs_backward(const TensorView& dlogprobs, const TensorView& logits, const TensorView& targets,
                               const TensorView& dlogits, const LogprobsOptions& opts) {
  return per_row("tokenLogprobsBackward", logits, opts,
                 [&](auto tag, int64_t n, int64_t v, float scale, unsigned long long* bad) {
                   using T = decltype(tag);
                   detail::token_logprobs_backward_kernel<T><<<static_cast<unsigned>(n), 256>>>(
                       dlogprobs.as<float>(), logits.as<T>(), v, targets.as<int32_t>(), scale, dlogits.as<T>(), bad);
                 });
}

namespace {
detail::LinearProblem linear_problem(const TensorView& hidden, const TensorView& weight, const TensorView& targets,
                                     float temperature, const char* fn) {
  detail::LinearProblem p;
  p.dtype = hidden.dtype;
  p.hidden = hidden.data;
  p.weight = weight.data;
  p.targets = targets.as<int32_t>();
  p.n = hidden.shape[0];
  p.d = hidden.shape[1];
  p.v = weight.shape[0];
  p.inv_temperature = 1.0f / temperature;
  p.fn = fn;
  return p;
}
}  // namespace

Status linear_token_logprobs(const TensorView& hidden, const TensorView& weight, const TensorView& targets,
                             const TensorView& out, const LogprobsOptions& opts) {
  const auto p = linear_problem(hidden, weight, targets, opts.temperature, "linearTokenLogprobs");
  DeviceScratch lse;
  VP_RETURN_IF_ERROR(lse.alloc(static_cast<size_t>(p.n) * sizeof(float)));
  return detail::linear_forward(p, out.as<float>(), lse.as<float>());
}

Status linear_token_logprobs_backward(const TensorView& dlogprobs, const TensorView& hidden, const TensorView& weight,
                                      const TensorView& targets, const TensorView& dhidden, const TensorView& dweight,
                                      const LogprobsOptions& opts, float* logprobs) {
  const auto p = linear_problem(hidden, weight, targets, opts.temperature, "linearTokenLogprobsBackward");
  DeviceScratch buf;
  VP_RETURN_IF_ERROR(buf.alloc(static_cast<size_t>(2 * p.n) * sizeof(float)));
  // The forward's log-probs go to the caller's buffer when given, else to scratch.
  VP_RETURN_IF_ERROR(detail::linear_forward(p, logprobs ? logprobs : buf.as<float>(), buf.as<float>() + p.n));
  return detail::linear_backward(p, dlogprobs.as<float>(), buf.as<float>() + p.n, dhidden.data, dweight.data);
}

}  // namespace vp::cuda
