// CUDA InfoNCE: flash-attention-style tiles, tensor cores through WMMA.
//
// One kernel template, three modes. A block of 4 warps owns BR = 64 "owner"
// rows (each warp 16 of them) and streams BC = 64-row tiles of the other side
// past them; the scores of a tile never leave the chip:
//
//   FWD  owner = queries, streamed = keys:    online max/sum per row → lse, loss terms
//   DQ   owner = queries, streamed = keys:    ∂loss/∂q̂ rows, from the stored lse
//   DK   owner = keys,    streamed = queries: ∂loss/∂k̂ rows, from the stored lse
//
// Per tile: S = X_blk · Y_tileᵀ from the raw (unnormalized) inputs, with the
// contraction over D staged through shared memory in KC = 64 chunks (so any D
// fits); s = S · rx_i · ry_j / τ in f32 (the products of bf16/f16 values are
// exact in the f32 accumulator, so the scores lose nothing to normalization);
// then, for the gradients, G = P − onehot(positive) is written to shared memory
// in the input dtype, the tile's rows are loaded again already normalized
// (ŷ = y · ry, values in [−1, 1], safe in f16), and acc += G · Ŷ[:, chunk].
// The accumulator holds a DC = 128-column chunk of the output in registers;
// wider rows run several chunks on gridDim.y (each recomputing S).
// The normalization's backward needs ⟨x̂_i, ∂loss/∂x̂_i⟩ = (g/N) Σ_j G_ij s_ij,
// which the owner warp sums from its scores, so every output element is
// written once, in the input dtype, with no float workspace of size N × D.
//
// bf16/f16: 16x16x16 fragments, f32 accumulation. f32: tf32 fragments
// (16x16x8) with the 3xTF32 split (a·b ≈ a_hi·b_hi + a_hi·b_lo + a_lo·b_hi),
// which keeps f32 accuracy on the tensor cores.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "scratch_pool.h"
#include "vp/cuda.h"
#include "vp/infonce.h"

namespace vp::cuda {
namespace {

using namespace nvcuda;

constexpr int BR = 64, BC = 64, KC = 64, DC = 128, THREADS = 128;
constexpr int LDX = KC + 8;   // X/Y chunk rows (elements)
constexpr int LDS = BC + 4;   // score rows (floats)
constexpr int LDG = BC + 8;   // G rows (elements)
constexpr int LDY = DC + 8;   // normalized Y chunk rows (elements)
constexpr int LDO = DC + 4;   // output staging rows (floats)

enum Mode { kFwd = 0, kDq = 1, kDk = 2 };

// Shared-memory element type and the fragment steps of each input dtype.
template <typename T>
struct Frag {
  using S = T;
  static constexpr int KS = 16;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  template <typename Layout>
  __device__ static void mma(Acc& acc, const S* a, int lda, const S* b, int ldb) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, Layout> fb;
    wmma::load_matrix_sync(fa, a, lda);
    wmma::load_matrix_sync(fb, b, ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
};

template <>
struct Frag<float> {
  using S = float;
  static constexpr int KS = 8;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
  template <typename Layout>
  __device__ static void mma(Acc& acc, const S* a, int lda, const S* b, int ldb) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a_hi, a_lo;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, Layout> b_hi, b_lo;
    wmma::load_matrix_sync(a_hi, a, lda);
    wmma::load_matrix_sync(b_hi, b, ldb);
#pragma unroll
    for (int i = 0; i < a_hi.num_elements; ++i) {
      const float x = a_hi.x[i], h = wmma::__float_to_tf32(x);
      a_hi.x[i] = h;
      a_lo.x[i] = wmma::__float_to_tf32(x - h);
    }
#pragma unroll
    for (int i = 0; i < b_hi.num_elements; ++i) {
      const float x = b_hi.x[i], h = wmma::__float_to_tf32(x);
      b_hi.x[i] = h;
      b_lo.x[i] = wmma::__float_to_tf32(x - h);
    }
    wmma::mma_sync(acc, a_lo, b_hi, acc);
    wmma::mma_sync(acc, a_hi, b_lo, acc);
    wmma::mma_sync(acc, a_hi, b_hi, acc);
  }
};

template <typename T>
struct Params {
  const T* x;  // owner rows [R, D]
  const T* y;  // streamed rows [C, D]
  const float* rx;
  const float* ry;
  int64_t R, C, D;
  const int32_t* pos;  // [N]: the positive key of each query
  const float* lse;    // [N]: per owner row (DQ) or per streamed row (DK)
  float* lse_out;      // FWD
  float* row_loss;     // FWD: lse_i − s(i, pos_i)
  float* row_dlt;      // DQ: −(g/N) Σ_j G_ij s_ij, the row's share of ∂loss/∂log τ
  T* out;              // DQ/DK: [R, D]
  float inv_tau, gn, gnt;  // 1/τ, g/N, g/(N τ)
  bool normalize;
};

template <typename T>
constexpr size_t smem_bytes() {
  using S = typename Frag<T>::S;
  const size_t main = sizeof(S) * (2 * BR * LDX + BR * LDG + BC * LDY) + sizeof(float) * BR * LDS;
  const size_t stage = sizeof(float) * BR * LDO;
  return (main > stage ? main : stage) + 3 * BC * sizeof(float);
}

template <typename T, int MODE>
__global__ void __launch_bounds__(THREADS) infonce_kernel(Params<T> p) {
  using F = Frag<T>;
  using S = typename F::S;
  extern __shared__ __align__(128) unsigned char smem[];
  S* xs = reinterpret_cast<S*>(smem);                 // [BR][LDX]
  S* ys = xs + BR * LDX;                              // [BC][LDX]
  S* gs = ys + BC * LDX;                              // [BR][LDG]
  S* y2 = gs + BR * LDG;                              // [BC][LDY]
  float* ss = reinterpret_cast<float*>(y2 + BC * LDY);  // [BR][LDS]
  float* os = reinterpret_cast<float*>(smem);         // [BR][LDO], after the tile loop
  float* aux = reinterpret_cast<float*>(smem + (smem_bytes<T>() - 3 * BC * sizeof(float)));
  float* ry_s = aux;                                   // this tile's ry
  float* lse_s = aux + BC;                             // DK: this tile's lse
  int* pos_s = reinterpret_cast<int*>(aux + 2 * BC);   // DK: this tile's positives

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * BR;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * DC;
  const int my_row = warp * 16 + lane / 2, half = lane & 1;
  const int64_t gi = r0 + my_row;
  const bool row_ok = gi < p.R;
  const float rxi = row_ok ? p.rx[gi] : 0.0f;
  const int my_pos = (MODE != kDk && row_ok) ? p.pos[gi] : -1;
  const float my_lse = (MODE == kDq && row_ok) ? p.lse[gi] : 0.0f;
  float m_run = -INFINITY, l_run = 0.0f, s_pos = 0.0f, c_acc = 0.0f;
  bool has_pos = false;

  typename F::Acc acc[DC / 16];
  if (MODE != kFwd)
#pragma unroll
    for (int f = 0; f < DC / 16; ++f) wmma::fill_fragment(acc[f], 0.0f);

  for (int64_t t0 = 0; t0 < p.C; t0 += BC) {
    if (threadIdx.x < BC) {
      const int64_t j = t0 + threadIdx.x;
      const bool ok = j < p.C;
      ry_s[threadIdx.x] = ok ? p.ry[j] : 0.0f;
      if (MODE == kDk) {
        lse_s[threadIdx.x] = ok ? p.lse[j] : 0.0f;
        pos_s[threadIdx.x] = ok ? p.pos[j] : -1;
      }
    }
    // S = X_blk · Y_tileᵀ over D in KC chunks.
    typename F::Acc sf[BC / 16];
#pragma unroll
    for (int f = 0; f < BC / 16; ++f) wmma::fill_fragment(sf[f], 0.0f);
    for (int64_t k0 = 0; k0 < p.D; k0 += KC) {
      for (int idx = threadIdx.x; idx < BR * KC; idx += THREADS) {
        const int r = idx / KC, k = idx % KC;
        const int64_t gr = r0 + r, gk = k0 + k;
        xs[r * LDX + k] = (gr < p.R && gk < p.D) ? p.x[gr * p.D + gk] : S(0.0f);
        const int64_t gj = t0 + r;
        ys[r * LDX + k] = (gj < p.C && gk < p.D) ? p.y[gj * p.D + gk] : S(0.0f);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < KC; kk += F::KS)
#pragma unroll
        for (int f = 0; f < BC / 16; ++f)
          F::template mma<wmma::col_major>(sf[f], xs + warp * 16 * LDX + kk, LDX, ys + f * 16 * LDX + kk, LDX);
      __syncthreads();
    }
#pragma unroll
    for (int f = 0; f < BC / 16; ++f)
      wmma::store_matrix_sync(ss + warp * 16 * LDS + f * 16, sf[f], LDS, wmma::mem_row_major);
    __syncwarp();

    // Each lane: 32 columns of its row.
    float* srow = ss + my_row * LDS + half * 32;
    const float scale = rxi * p.inv_tau;
    if (MODE == kFwd) {
      float tmax = -INFINITY;
      for (int c = 0; c < 32; ++c) {
        const int jj = half * 32 + c;
        const int64_t j = t0 + jj;
        if (j >= p.C) break;
        const float s = srow[c] * scale * ry_s[jj];
        srow[c] = s;
        tmax = fmaxf(tmax, s);
        if (j == my_pos) {
          s_pos = s;
          has_pos = true;
        }
      }
      tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
      const float m_new = fmaxf(m_run, tmax);
      float part = 0.0f;
      for (int c = 0; c < 32; ++c) {
        if (t0 + half * 32 + c >= p.C) break;
        part += expf(srow[c] - m_new);
      }
      part += __shfl_xor_sync(0xffffffffu, part, 1);
      l_run = l_run * expf(m_run - m_new) + part;
      m_run = m_new;
    } else {
      S* grow = gs + my_row * LDG + half * 32;
      for (int c = 0; c < 32; ++c) {
        const int jj = half * 32 + c;
        const int64_t j = t0 + jj;
        float g = 0.0f;
        if (row_ok && j < p.C) {
          const float s = srow[c] * scale * ry_s[jj];
          if (MODE == kDq) {
            g = expf(s - my_lse) - (j == my_pos ? 1.0f : 0.0f);
          } else {
            g = expf(s - lse_s[jj]) - (pos_s[jj] == gi ? 1.0f : 0.0f);
          }
          c_acc += g * s;
        }
        grow[c] = S(g);
      }
      // The tile's rows again, normalized, columns [c0, c0 + DC).
      for (int idx = threadIdx.x; idx < BC * DC; idx += THREADS) {
        const int r = idx / DC, c = idx % DC;
        const int64_t gj = t0 + r, gc = c0 + c;
        float v = 0.0f;
        if (gj < p.C && gc < p.D) v = static_cast<float>(p.y[gj * p.D + gc]) * (p.normalize ? ry_s[r] : 1.0f);
        y2[r * LDY + c] = S(v);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BC; kk += F::KS)
#pragma unroll
        for (int f = 0; f < DC / 16; ++f)
          F::template mma<wmma::row_major>(acc[f], gs + warp * 16 * LDG + kk, LDG, y2 + kk * LDY + f * 16, LDY);
    }
    __syncthreads();
  }

  if (MODE == kFwd) {
    const float other = __shfl_xor_sync(0xffffffffu, s_pos, 1);
    const bool other_has = __shfl_xor_sync(0xffffffffu, has_pos ? 1 : 0, 1) != 0;
    if (!has_pos && other_has) s_pos = other;
    if (row_ok && half == 0) {
      const float l = m_run + logf(l_run);
      p.lse_out[gi] = l;
      p.row_loss[gi] = l - s_pos;
    }
    return;
  }
  const float c_row = p.gn * (c_acc + __shfl_xor_sync(0xffffffffu, c_acc, 1));
  if (MODE == kDq && blockIdx.y == 0 && row_ok && half == 0) p.row_dlt[gi] = -c_row;
#pragma unroll
  for (int f = 0; f < DC / 16; ++f)
    wmma::store_matrix_sync(os + warp * 16 * LDO + f * 16, acc[f], LDO, wmma::mem_row_major);
  __syncwarp();
  if (!row_ok) return;
  const float proj = p.normalize ? rxi * c_row : 0.0f;  // dx = rx (gnt·acc − x̂ c) = rx·gnt·acc − x·rx²·c
  for (int c = half * (DC / 2); c < (half + 1) * (DC / 2); ++c) {
    const int64_t gc = c0 + c;
    if (gc >= p.D) break;
    const float xv = static_cast<float>(p.x[gi * p.D + gc]);
    p.out[gi * p.D + gc] = T(rxi * (p.gnt * os[my_row * LDO + c] - xv * proj));
  }
}

// Inverse row norms (1 without normalize); the lowest bad row (non-finite, or
// zero norm when normalizing) goes to *bad. One warp a row.
template <typename T>
__global__ void row_scales_kernel(const T* __restrict__ x, int64_t rows, int64_t d, bool normalize,
                                  float* __restrict__ inv, unsigned long long* bad) {
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  float ss = 0.0f;
  for (int64_t c = lane; c < d; c += 32) {
    const float v = static_cast<float>(x[r * d + c]);
    ss = fmaf(v, v, ss);
  }
  for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (lane != 0) return;
  if (!isfinite(ss) || (normalize && ss == 0.0f)) {
    atomicMin(bad, static_cast<unsigned long long>(r));
    inv[r] = 0.0f;
    return;
  }
  inv[r] = normalize ? rsqrtf(ss) : 1.0f;
}

__global__ void all_finite_kernel(const float* __restrict__ v, int64_t n, unsigned long long* bad) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && !isfinite(v[i])) atomicMin(bad, static_cast<unsigned long long>(i));
}

Status check(cudaError_t e, const char* fn, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status::Internal(std::string(fn) + ": " + what + ": " + cudaGetErrorString(e));
}

// Device scratch leased from the pool (cuda/scratch_pool.h) until scope exit.
struct InfoNceScratch {
  Scratch lease;
  template <typename U>
  Status alloc(U** out, size_t count, const char* fn) {
    return lease.get(out, count + (16 + sizeof(U) - 1) / sizeof(U), fn);  // 16 bytes of slack, as before
  }
};

template <typename T, int MODE>
Status launch(const Params<T>& p, const char* fn) {
  constexpr size_t bytes = smem_bytes<T>();
  cudaError_t e = cudaFuncSetAttribute(infonce_kernel<T, MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes));
  if (e != cudaSuccess) return check(e, fn, "cudaFuncSetAttribute");
  const int64_t gx = (p.R + BR - 1) / BR;
  const int64_t gy = MODE == kFwd ? 1 : (p.D + DC - 1) / DC;
  if (gx > 2147483647 || gy > 65535) return Status::Invalid(std::string(fn) + ": too many rows or columns for the CUDA grid");
  infonce_kernel<T, MODE><<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), THREADS, bytes>>>(p);
  return check(cudaGetLastError(), fn, "kernel launch");
}

template <typename T>
Status run(const InfoNceArgs& a, InfoNceResult* result) {
  const char* fn = a.fn;
  const int64_t n = a.queries.shape[0], d = a.queries.shape[1], m = a.keys.shape[0];
  const T* q = a.queries.as<T>();
  const T* k = a.keys.as<T>();
  InfoNceScratch scratch;
  float *rq, *rk, *row_loss, *row_dlt;
  int32_t* pos;
  unsigned long long* bad;
  VP_RETURN_IF_ERROR(scratch.alloc(&rq, n, fn));
  VP_RETURN_IF_ERROR(scratch.alloc(&rk, m, fn));
  VP_RETURN_IF_ERROR(scratch.alloc(&row_loss, n, fn));
  VP_RETURN_IF_ERROR(scratch.alloc(&row_dlt, n, fn));
  VP_RETURN_IF_ERROR(scratch.alloc(&pos, n, fn));
  VP_RETURN_IF_ERROR(scratch.alloc(&bad, 3, fn));
  VP_RETURN_IF_ERROR(check(cudaMemcpy(pos, a.positive, n * sizeof(int32_t), cudaMemcpyHostToDevice), fn, "copy positive"));
  VP_RETURN_IF_ERROR(check(cudaMemset(bad, 0xff, 3 * sizeof(unsigned long long)), fn, "cudaMemset"));
  const bool normalize = a.opts.normalize;
  row_scales_kernel<T><<<static_cast<unsigned>((n * 32 + 255) / 256), 256>>>(q, n, d, normalize, rq, bad);
  row_scales_kernel<T><<<static_cast<unsigned>((m * 32 + 255) / 256), 256>>>(k, m, d, normalize, rk, bad + 1);
  float* lse = a.lse.as<float>();
  if (!a.forward) all_finite_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(lse, n, bad + 2);
  VP_RETURN_IF_ERROR(check(cudaGetLastError(), fn, "row-norm kernel launch"));
  unsigned long long bad_h[3];
  VP_RETURN_IF_ERROR(check(cudaMemcpy(bad_h, bad, sizeof(bad_h), cudaMemcpyDeviceToHost), fn, "row norms"));
  const char* names[2] = {"queries", "keys"};
  for (int s = 0; s < 2; ++s) {
    if (bad_h[s] == ~0ull) continue;
    return Status::OutOfRange(std::string(fn) + ": " + names[s] + " row " + std::to_string(bad_h[s]) +
                              (normalize ? " is not finite or has zero norm, so it cannot be L2-normalized"
                                         : " holds a non-finite value (NaN or Infinity)"));
  }
  if (bad_h[2] != ~0ull)
    return Status::OutOfRange(std::string(fn) + ": lse[" + std::to_string(bad_h[2]) +
                              "] must be finite (the lse of a forward pass)");

  Params<T> p{};
  p.D = d;
  p.pos = pos;
  p.inv_tau = 1.0f / a.opts.temperature;
  p.gn = static_cast<float>(double(a.opts.grad_loss) / double(n));
  p.gnt = static_cast<float>(double(a.opts.grad_loss) / (double(n) * double(a.opts.temperature)));
  p.normalize = normalize;
  if (a.forward) {
    Params<T> f = p;
    f.x = q, f.y = k, f.rx = rq, f.ry = rk, f.R = n, f.C = m;
    f.lse_out = lse, f.row_loss = row_loss;
    VP_RETURN_IF_ERROR((launch<T, kFwd>(f, fn)));
  }
  if (a.backward) {
    Params<T> g = p;
    g.x = q, g.y = k, g.rx = rq, g.ry = rk, g.R = n, g.C = m;
    g.lse = lse, g.row_dlt = row_dlt, g.out = a.d_queries.as<T>();
    VP_RETURN_IF_ERROR((launch<T, kDq>(g, fn)));
    Params<T> h = p;
    h.x = k, h.y = q, h.rx = rk, h.ry = rq, h.R = m, h.C = n;
    h.lse = lse, h.out = a.d_keys.as<T>();
    VP_RETURN_IF_ERROR((launch<T, kDk>(h, fn)));
  }
  // The per-row terms come back to be summed in double; a non-finite one means
  // scores that float32 cannot hold.
  std::vector<float> host(n);
  auto sum_rows = [&](const float* dev, const char* what, double* out) -> Status {
    VP_RETURN_IF_ERROR(check(cudaMemcpy(host.data(), dev, n * sizeof(float), cudaMemcpyDeviceToHost), fn, what));
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(host[i]))
        return Status::OutOfRange(std::string(fn) + ": the scores of query row " + std::to_string(i) +
                                  " overflow float32 (|<q, k>| / temperature is too large): scale the features "
                                  "down, normalize them, or raise the temperature");
      s += host[i];
    }
    *out = s;
    return Status::Ok();
  };
  if (a.forward) {
    VP_RETURN_IF_ERROR(sum_rows(row_loss, "loss", &result->loss));
    result->loss /= double(n);
  }
  if (a.backward) VP_RETURN_IF_ERROR(sum_rows(row_dlt, "dLogTemperature", &result->d_log_temperature));
  return check(cudaDeviceSynchronize(), fn, "kernels");
}

}  // namespace

Status info_nce(const InfoNceArgs& a, InfoNceResult* result) {
  if (!available()) return Status::Unavailable(std::string(a.fn) + ": CUDA is unavailable: " + unavailable_reason());
  switch (a.queries.dtype) {
    case DType::kFloat32: return run<float>(a, result);
    case DType::kBFloat16: return run<__nv_bfloat16>(a, result);
    case DType::kFloat16: return run<__half>(a, result);
    default: return Status::Invalid(std::string(a.fn) + ": CUDA takes float32, bfloat16 or float16, got " + dtype_name(a.queries.dtype));
  }
}

}  // namespace vp::cuda
