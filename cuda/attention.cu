// CUDA fused attention, forward and backward (docs/attention.md): varlen through
// cu_seqlens, causal aligned bottom-right, grouped-query heads, head dims up to
// 256, float32 accumulation everywhere.
//
// bfloat16 / float16: FlashAttention-2 kernels on the tensor cores
// (mma.sync.m16n8k16, f32 accumulators). The head dim is padded to a template
// size DP in {32, 64, 128, 256} (zero-filled in shared memory).
//  * forward: a block of 4 warps owns 64 query rows of one (sequence, head), 16
//    per warp; it streams 64-key tiles of K and V through shared memory,
//    S = Q·Kᵀ on the tensor cores, the online softmax on the accumulator
//    registers (row statistics reduced over the 4 lanes that share a row), and
//    O += P·V with P re-packed from the S accumulators straight into A
//    fragments (no trip through shared memory).
//  * backward: a block owns 64 keys of one (sequence, KV head), 16 per warp, and
//    loops over the query tiles of every query head of its group: Sᵀ = K·Qᵀ and
//    dPᵀ = V·dOᵀ, P recomputed from lse, dS = P∘(dP − delta)·scale, then
//    dV += Pᵀ·dO and dK += dSᵀ·Q in registers, and dQ += dS·K through shared
//    memory into a float32 accumulator with atomics (converted at the end).
// float32: SIMT kernels (exact float32 products; no TF32), one warp per query
// row (forward, dq) or per key (dk/dv), K/V or Q/dO tiles shared by the block.
// They are also the reference the GPU tests compare the tensor-core path with.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "vp/attention.h"
#include "vp/cuda.h"

#include "attention_nonfinite.cuh"
#include "dtype.cuh"
#include "host_checks.h"

namespace vp::cuda {
namespace {

using dtype::from_f;
using dtype::to_f;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- element types -----------------------------------------------------------



// Two floats as one 32-bit register of two 16-bit values (lo in the low half).
template <typename T>
__device__ __forceinline__ uint32_t pack_f2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack_f2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack_f2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t ld32(const void* p) { return *reinterpret_cast<const uint32_t*>(p); }

// B fragments of two adjacent n-tiles (columns n0..n0+15) over k rows k0..k0+15 of a
// row-major [k][n] tile in shared memory, `base` = &tile[k0][n0], one ldmatrix.x4.trans:
// matrix m (its row addresses from lanes 8m..8m+7) is rows k0 + 8(m&1).., columns n0 + 8(m>>1)..;
// transposed, lane (g, t) gets rows 2t, 2t+1 of column g, which is the B layout.
// b0 = the fragment of n-tile n0, b1 = that of n-tile n0 + 8. Rows must be 16-byte aligned.
template <typename T>
__device__ __forceinline__ void ldsm_b_pair(uint32_t b0[2], uint32_t b1[2], const T* base, int lds, int lane) {
  const int m = lane >> 3, r = lane & 7;
  const T* row = base + ((m & 1) * 8 + r) * lds + (m >> 1) * 8;
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
               : "r"(addr));
}

// D(16x8, f32) += A(16x16, row) · B(16x8, col). Fragment layouts (PTX ISA, mma.m16n8k16):
// g = lane/4, t = lane%4; A: a0 (row g, k 2t..2t+1), a1 (row g+8, k 2t..), a2 (row g, k 2t+8..),
// a3 (row g+8, k 2t+8..); B: b0 (k 2t..2t+1, col g), b1 (k 2t+8.., col g);
// C: c0,c1 (row g, cols 2t, 2t+1), c2,c3 (row g+8, cols 2t, 2t+1).
template <typename T>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], const uint32_t b[2]);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
// Reductions over the 4 lanes (t = 0..3) that hold one accumulator row.
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x;
}
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
  return x;
}

// Rows [0, nrows) x columns [0, DP) of a tile into shared memory (row stride lds), from
// global rows of stride ld; rows >= valid and columns >= D are zero. vec: 16-byte loads
// (D % 8 == 0 and 16-byte aligned pointers, checked on the host).
template <typename T, int DP>
__device__ __forceinline__ void load_tile(T* s, int lds, const T* g, int64_t ld, int valid, int nrows, int D,
                                          bool vec) {
  if constexpr (sizeof(T) == 2) {
    if (vec) {
      constexpr int C = DP / 8;
      for (int idx = threadIdx.x; idx < nrows * C; idx += blockDim.x) {
        const int r = idx / C, c = idx % C;
        uint4 val = make_uint4(0u, 0u, 0u, 0u);
        if (r < valid && c * 8 < D) val = *reinterpret_cast<const uint4*>(g + static_cast<int64_t>(r) * ld + c * 8);
        *reinterpret_cast<uint4*>(s + r * lds + c * 8) = val;
      }
      return;
    }
  }
  for (int idx = threadIdx.x; idx < nrows * DP; idx += blockDim.x) {
    const int r = idx / DP, d = idx % DP;
    s[r * lds + d] = (r < valid && d < D) ? g[static_cast<int64_t>(r) * ld + d] : T(0.0f);
  }
}

// ---- parameters --------------------------------------------------------------

struct Params {
  const void* q;
  const void* k;
  const void* v;
  const void* out;   // forward: written; backward: read
  const void* dout;  // backward
  float* lse;        // [H, totalQ]
  float* delta;      // backward: [H, totalQ]
  float* dq_acc;     // backward (tensor-core path): float32 [totalQ, H, D]
  void* dq;
  void* dk;
  void* dv;
  const int32_t* cu_q;  // device, batch + 1
  const int32_t* cu_k;
  int batch, H, Hkv, G, D;
  int64_t total_q;
  int64_t ldq, ldk;  // row strides in elements: H*D, Hkv*D
  int tiles;         // blocks per sequence along the grid's x (x = tile + tiles * b)
  float scale, scale_log2;
  bool causal;
  bool vec;  // 16-byte tile loads are safe (see load_tile)
};

// ---- what every kernel's block starts from ------------------------------------

// The block's sequence b = blockIdx.x / p.tiles, its tile along that sequence and
// its head (blockIdx.y: a query head, or a KV head in the backward), and the
// sequence's query and key ranges.
struct SeqTile {
  int tile, head, qbeg, Tq, kbeg, Tk;
};
__device__ __forceinline__ SeqTile seq_tile(const Params& p) {
  const int b = blockIdx.x / p.tiles;
  const int qbeg = p.cu_q[b], kbeg = p.cu_k[b];
  return {static_cast<int>(blockIdx.x % p.tiles), static_cast<int>(blockIdx.y), qbeg, p.cu_q[b + 1] - qbeg, kbeg,
          p.cu_k[b + 1] - kbeg};
}

// Query head h of a sequence starting at row qbeg: its Q and dO rows, lse and delta.
template <typename T>
struct HeadRows {
  const T* q;
  const T* dout;
  const float* lse;
  const float* delta;
};
template <typename T>
__device__ __forceinline__ HeadRows<T> head_rows(const Params& p, int qbeg, int h) {
  const int64_t at = static_cast<int64_t>(qbeg) * p.ldq + h * p.D;
  const int64_t st = static_cast<int64_t>(h) * p.total_q + qbeg;
  return {static_cast<const T*>(p.q) + at, static_cast<const T*>(p.dout) + at, p.lse + st, p.delta + st};
}

// KV head hk's K and V from key row r (a sequence's first key plus an offset).
template <typename T>
struct KvRows {
  const T* k;
  const T* v;
};
template <typename T>
__device__ __forceinline__ KvRows<T> kv_rows(const Params& p, int r, int hk) {
  const int64_t at = static_cast<int64_t>(r) * p.ldk + hk * p.D;
  return {static_cast<const T*>(p.k) + at, static_cast<const T*>(p.v) + at};
}

// Rows [qs, qs + n) of a head's lse (in log2 units; +inf for a row that sees no
// key, so that exp2(s - lse) = 0) and delta into shared memory; rows past Tq: +inf, 0.
__device__ __forceinline__ void load_row_stats(float* sL, float* sDl, const float* lg, const float* dlg, int qs,
                                               int n, int Tq) {
  for (int r = threadIdx.x; r < n; r += blockDim.x) {
    const bool ok = qs + r < Tq;
    const float lv = ok ? lg[qs + r] : -INFINITY;
    sL[r] = lv == -INFINITY ? INFINITY : lv * kLog2e;
    sDl[r] = ok ? dlg[qs + r] : 0.0f;
  }
}

// Rows [r0, r0 + nrows) of two matrices a and b (row stride ld) as float32 into
// shared tiles sa and sb (row stride lds, DP columns); rows at or past `valid`
// and columns at or past D are 0. (The SIMT kernels' K/V and Q/dO tiles.)
template <typename T, int DP>
__device__ __forceinline__ void load_rows2_f32(float* sa, float* sb, int lds, const T* a, const T* b, int64_t ld,
                                               int r0, int nrows, int valid, int D) {
  for (int idx = threadIdx.x; idx < nrows * DP; idx += blockDim.x) {
    const int r = idx / DP, d = idx % DP;
    const bool ok = r0 + r < valid && d < D;
    const int64_t at = static_cast<int64_t>(r0 + r) * ld + d;
    sa[r * lds + d] = ok ? to_f<T>(a[at]) : 0.0f;
    sb[r * lds + d] = ok ? to_f<T>(b[at]) : 0.0f;
  }
}

// ---- forward, tensor cores ---------------------------------------------------

template <typename T, int DP>
__global__ void __launch_bounds__(128) fwd_tc_kernel(const Params p) {
  constexpr int BR = 64, BC = 64, LDS = DP + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem);
  T* sK = sQ + BR * LDS;
  T* sV = sK + BC * LDS;
  const auto [tile, h, qbeg, Tq, kbeg, Tk] = seq_tile(p);
  const int q0 = tile * BR;
  if (q0 >= Tq) return;
  const int hk = h / p.G, off = Tk - Tq, D = p.D;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const T* qg = static_cast<const T*>(p.q) + static_cast<int64_t>(qbeg + q0) * p.ldq + h * D;
  const auto [kg, vg] = kv_rows<T>(p, kbeg, hk);
  load_tile<T, DP>(sQ, LDS, qg, p.ldq, Tq - q0, BR, D, p.vec);
  const int kend = p.causal ? min(Tk, q0 + BR + off) : Tk;
  const int r_lo = q0 + warp * 16 + g, r_hi = r_lo + 8;  // this thread's two query rows
  float o[DP / 8][4];
#pragma unroll
  for (int i = 0; i < DP / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int k0 = 0; k0 < kend; k0 += BC) {
    __syncthreads();
    load_tile<T, DP>(sK, LDS, kg + static_cast<int64_t>(k0) * p.ldk, p.ldk, Tk - k0, BC, D, p.vec);
    load_tile<T, DP>(sV, LDS, vg + static_cast<int64_t>(k0) * p.ldk, p.ldk, Tk - k0, BC, D, p.vec);
    __syncthreads();
    float s[BC / 8][4];
#pragma unroll
    for (int i = 0; i < BC / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kc = 0; kc < DP / 16; ++kc) {
      uint32_t a[4];
      const T* qa = sQ + (warp * 16 + g) * LDS + kc * 16 + t4 * 2;
      a[0] = ld32(qa);
      a[1] = ld32(qa + 8 * LDS);
      a[2] = ld32(qa + 8);
      a[3] = ld32(qa + 8 * LDS + 8);
#pragma unroll
      for (int nt = 0; nt < BC / 8; ++nt) {
        const T* kb = sK + (nt * 8 + g) * LDS + kc * 16 + t4 * 2;
        const uint32_t bb[2] = {ld32(kb), ld32(kb + 8)};
        mma16816<T>(s[nt], a, bb);
      }
    }
    float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + nt * 8 + t4 * 2 + (e & 1);
        const int row = e < 2 ? r_lo : r_hi;
        const bool ok = key < Tk && (!p.causal || key <= row + off);
        s[nt][e] = ok ? s[nt][e] * p.scale_log2 : -INFINITY;
        tmax[e >> 1] = fmaxf(tmax[e >> 1], s[nt][e]);
      }
    float alpha[2], msafe[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float mn = fmaxf(m[r], quad_max(tmax[r]));
      msafe[r] = mn == -INFINITY ? 0.0f : mn;  // a row with no visible key yet: exp2(-inf) = 0, no NaN
      alpha[r] = exp2f(m[r] - msafe[r]);
      m[r] = mn;
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - msafe[e >> 1]);
        l[e >> 1] += s[nt][e];
      }
#pragma unroll
    for (int dn = 0; dn < DP / 8; ++dn) {
      o[dn][0] *= alpha[0];
      o[dn][1] *= alpha[0];
      o[dn][2] *= alpha[1];
      o[dn][3] *= alpha[1];
    }
#pragma unroll
    for (int kc = 0; kc < BC / 16; ++kc) {
      const uint32_t a[4] = {pack_f2<T>(s[2 * kc][0], s[2 * kc][1]), pack_f2<T>(s[2 * kc][2], s[2 * kc][3]),
                             pack_f2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                             pack_f2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
      for (int dn = 0; dn < DP / 8; dn += 2) {
        uint32_t b0[2], b1[2];
        ldsm_b_pair<T>(b0, b1, sV + kc * 16 * LDS + dn * 8, LDS, lane);
        mma16816<T>(o[dn], a, b0);
        mma16816<T>(o[dn + 1], a, b1);
      }
    }
  }

  T* og = const_cast<T*>(static_cast<const T*>(p.out));
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = r ? r_hi : r_lo;
    const float lr = quad_sum(l[r]);
    if (row >= Tq) continue;
    const float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
    T* orow = og + static_cast<int64_t>(qbeg + row) * p.ldq + h * D;
#pragma unroll
    for (int dn = 0; dn < DP / 8; ++dn) {
      const int d = dn * 8 + t4 * 2;
      if (d < D) orow[d] = from_f<T>(o[dn][2 * r] * inv);
      if (d + 1 < D) orow[d + 1] = from_f<T>(o[dn][2 * r + 1] * inv);
    }
    if (t4 == 0) p.lse[static_cast<int64_t>(h) * p.total_q + qbeg + row] = lr > 0.0f ? (m[r] + log2f(lr)) * kLn2 : -INFINITY;
  }
}

// ---- forward, SIMT (float32, and a reference for the 16-bit types) ------------

template <typename T, int DP>
__global__ void __launch_bounds__(128) fwd_simt_kernel(const Params p) {
  constexpr int ROWS = 4, BC = 32, LDK = DP + 1;
  extern __shared__ __align__(16) unsigned char smem[];
  float* sK = reinterpret_cast<float*>(smem);
  float* sV = sK + BC * LDK;
  float* sQ = sV + BC * LDK;  // [ROWS][DP], pre-scaled to log2 units
  const auto [tile, h, qbeg, Tq, kbeg, Tk] = seq_tile(p);
  const int q0 = tile * ROWS;
  if (q0 >= Tq) return;
  const int hk = h / p.G, off = Tk - Tq, D = p.D;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int row = q0 + warp;
  const bool valid = row < Tq;
  const T* qg = static_cast<const T*>(p.q) + static_cast<int64_t>(qbeg + q0) * p.ldq + h * D;
  const auto [kg, vg] = kv_rows<T>(p, kbeg, hk);
  for (int idx = tid; idx < ROWS * DP; idx += 128) {
    const int r = idx / DP, d = idx % DP;
    sQ[idx] = (q0 + r < Tq && d < D) ? to_f<T>(qg[static_cast<int64_t>(r) * p.ldq + d]) * p.scale_log2 : 0.0f;
  }
  const int kend = p.causal ? min(Tk, q0 + ROWS + off) : Tk;
  float o[DP / 32];
#pragma unroll
  for (int t = 0; t < DP / 32; ++t) o[t] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int k0 = 0; k0 < kend; k0 += BC) {
    __syncthreads();
    load_rows2_f32<T, DP>(sK, sV, LDK, kg, vg, p.ldk, k0, BC, Tk, D);
    __syncthreads();
    float s = 0.0f;
    const float* qr = sQ + warp * DP;
    const float* kr = sK + lane * LDK;
#pragma unroll 8
    for (int d = 0; d < DP; ++d) s = fmaf(qr[d], kr[d], s);
    const int key = k0 + lane;
    const bool ok = valid && key < Tk && (!p.causal || key <= row + off);
    s = ok ? s : -INFINITY;
    const float mn = fmaxf(m, warp_max(s));
    const float ms = mn == -INFINITY ? 0.0f : mn;
    const float alpha = exp2f(m - ms);
    const float pj = exp2f(s - ms);
    l = l * alpha + warp_sum(pj);
    m = mn;
#pragma unroll
    for (int t = 0; t < DP / 32; ++t) o[t] *= alpha;
    for (int j = 0; j < BC; ++j) {
      const float pjj = __shfl_sync(0xffffffffu, pj, j);
      const float* vr = sV + j * LDK + lane;
#pragma unroll
      for (int t = 0; t < DP / 32; ++t) o[t] = fmaf(pjj, vr[32 * t], o[t]);
    }
  }
  if (!valid) return;
  T* orow = const_cast<T*>(static_cast<const T*>(p.out)) + static_cast<int64_t>(qbeg + row) * p.ldq + h * D;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int t = 0; t < DP / 32; ++t)
    if (lane + 32 * t < D) orow[lane + 32 * t] = from_f<T>(o[t] * inv);
  if (lane == 0) p.lse[static_cast<int64_t>(h) * p.total_q + qbeg + row] = l > 0.0f ? (m + log2f(l)) * kLn2 : -INFINITY;
}

// ---- backward: delta = rowsum(dout * out), one warp per (row, head) ----------

template <typename T>
__global__ void delta_kernel(const Params p) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; w < p.total_q * p.H; w += warps) {
    const int64_t row = w / p.H;
    const int h = static_cast<int>(w % p.H);
    const T* a = static_cast<const T*>(p.dout) + row * p.ldq + h * p.D;
    const T* c = static_cast<const T*>(p.out) + row * p.ldq + h * p.D;
    float s = 0.0f;
    for (int d = lane; d < p.D; d += 32) s = fmaf(to_f<T>(a[d]), to_f<T>(c[d]), s);
    s = warp_sum(s);
    if (lane == 0) p.delta[static_cast<int64_t>(h) * p.total_q + row] = s;
  }
}

template <typename T>
__global__ void dq_convert_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = from_f<T>(src[i]);
}

// ---- backward, tensor cores --------------------------------------------------

template <typename T, int DP, int BR>
__global__ void __launch_bounds__(128) bwd_tc_kernel(const Params p) {
  constexpr int BC = 64, LDS = DP + 8, LDSS = BC + 8;
  constexpr int RT = BR / 16, CS = 4 / RT;  // dQ: row tiles x column splits over the 4 warps
  extern __shared__ __align__(16) unsigned char smem[];
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = sK + BC * LDS;
  T* sQ = sV + BC * LDS;
  T* sdO = sQ + BR * LDS;
  T* sdS = sdO + BR * LDS;                                   // [BR][LDSS]: dS (queries x keys)
  float* sL = reinterpret_cast<float*>(sdS + BR * LDSS);     // lse in log2 units (+inf: row sees nothing)
  float* sDl = sL + BR;                                      // delta
  const auto [tile, hk, qbeg, Tq, kbeg, Tk] = seq_tile(p);
  const int k0 = tile * BC;
  if (k0 >= Tk) return;
  const int off = Tk - Tq, D = p.D;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const auto [kg, vg] = kv_rows<T>(p, kbeg + k0, hk);
  load_tile<T, DP>(sK, LDS, kg, p.ldk, Tk - k0, BC, D, p.vec);
  load_tile<T, DP>(sV, LDS, vg, p.ldk, Tk - k0, BC, D, p.vec);
  float dk[DP / 8][4], dv[DP / 8][4];
#pragma unroll
  for (int i = 0; i < DP / 8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.0f;
  const int key_lo = k0 + warp * 16 + g, key_hi = key_lo + 8;
  const int q_lo = p.causal ? max(0, k0 - off) : 0;

  for (int gi = 0; gi < p.G; ++gi) {
    const int h = hk * p.G + gi;
    const auto [qg, dog, lg, dlg] = head_rows<T>(p, qbeg, h);
    for (int qs = q_lo; qs < Tq; qs += BR) {
      __syncthreads();
      load_tile<T, DP>(sQ, LDS, qg + static_cast<int64_t>(qs) * p.ldq, p.ldq, Tq - qs, BR, D, p.vec);
      load_tile<T, DP>(sdO, LDS, dog + static_cast<int64_t>(qs) * p.ldq, p.ldq, Tq - qs, BR, D, p.vec);
      load_row_stats(sL, sDl, lg, dlg, qs, BR, Tq);
      __syncthreads();
      float st[BR / 8][4], dpt[BR / 8][4];
#pragma unroll
      for (int i = 0; i < BR / 8; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[i][e] = dpt[i][e] = 0.0f;
#pragma unroll
      for (int kc = 0; kc < DP / 16; ++kc) {
        const T* ka = sK + (warp * 16 + g) * LDS + kc * 16 + t4 * 2;
        const T* va = sV + (warp * 16 + g) * LDS + kc * 16 + t4 * 2;
        const uint32_t ak[4] = {ld32(ka), ld32(ka + 8 * LDS), ld32(ka + 8), ld32(ka + 8 * LDS + 8)};
        const uint32_t av[4] = {ld32(va), ld32(va + 8 * LDS), ld32(va + 8), ld32(va + 8 * LDS + 8)};
#pragma unroll
        for (int nt = 0; nt < BR / 8; ++nt) {
          const T* qb = sQ + (nt * 8 + g) * LDS + kc * 16 + t4 * 2;
          const T* ob = sdO + (nt * 8 + g) * LDS + kc * 16 + t4 * 2;
          const uint32_t bq[2] = {ld32(qb), ld32(qb + 8)};
          const uint32_t bo[2] = {ld32(ob), ld32(ob + 8)};
          mma16816<T>(st[nt], ak, bq);
          mma16816<T>(dpt[nt], av, bo);
        }
      }
#pragma unroll
      for (int nt = 0; nt < BR / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int ql = nt * 8 + t4 * 2 + (e & 1);
          const int q = qs + ql;
          const int key = e < 2 ? key_lo : key_hi;
          const bool ok = key < Tk && q < Tq && (!p.causal || key <= q + off);
          const float pt = ok ? exp2f(st[nt][e] * p.scale_log2 - sL[ql]) : 0.0f;
          st[nt][e] = pt;
          dpt[nt][e] = pt * (dpt[nt][e] - sDl[ql]) * p.scale;
        }
      // dV += Pᵀ·dO, dK += dSᵀ·Q (A fragments straight from the accumulators)
#pragma unroll
      for (int kc = 0; kc < BR / 16; ++kc) {
        const uint32_t ap[4] = {pack_f2<T>(st[2 * kc][0], st[2 * kc][1]), pack_f2<T>(st[2 * kc][2], st[2 * kc][3]),
                                pack_f2<T>(st[2 * kc + 1][0], st[2 * kc + 1][1]),
                                pack_f2<T>(st[2 * kc + 1][2], st[2 * kc + 1][3])};
        const uint32_t as[4] = {pack_f2<T>(dpt[2 * kc][0], dpt[2 * kc][1]), pack_f2<T>(dpt[2 * kc][2], dpt[2 * kc][3]),
                                pack_f2<T>(dpt[2 * kc + 1][0], dpt[2 * kc + 1][1]),
                                pack_f2<T>(dpt[2 * kc + 1][2], dpt[2 * kc + 1][3])};
#pragma unroll
        for (int dn = 0; dn < DP / 8; dn += 2) {
          uint32_t bo0[2], bo1[2], bq0[2], bq1[2];
          ldsm_b_pair<T>(bo0, bo1, sdO + kc * 16 * LDS + dn * 8, LDS, lane);
          ldsm_b_pair<T>(bq0, bq1, sQ + kc * 16 * LDS + dn * 8, LDS, lane);
          mma16816<T>(dv[dn], ap, bo0);
          mma16816<T>(dv[dn + 1], ap, bo1);
          mma16816<T>(dk[dn], as, bq0);
          mma16816<T>(dk[dn + 1], as, bq1);
        }
      }
      // dS to shared memory as [query][key] for dQ = dS·K
#pragma unroll
      for (int nt = 0; nt < BR / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int ql = nt * 8 + t4 * 2 + (e & 1);
          const int kl = warp * 16 + g + (e < 2 ? 0 : 8);
          sdS[ql * LDSS + kl] = from_f<T>(dpt[nt][e]);
        }
      __syncthreads();
      {
        const int rt = warp % RT, cs = warp / RT;
        constexpr int NDN = DP / 8 / CS;
        float* dqg = p.dq_acc + static_cast<int64_t>(qbeg + qs) * p.ldq + h * D;
#pragma unroll
        for (int j = 0; j < NDN; j += 2) {
          const int dn = cs * NDN + j;
          float acc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
          for (int kc = 0; kc < BC / 16; ++kc) {
            const T* sa = sdS + (rt * 16 + g) * LDSS + kc * 16 + t4 * 2;
            const uint32_t a[4] = {ld32(sa), ld32(sa + 8 * LDSS), ld32(sa + 8), ld32(sa + 8 * LDSS + 8)};
            uint32_t b0[2], b1[2];
            ldsm_b_pair<T>(b0, b1, sK + kc * 16 * LDS + dn * 8, LDS, lane);
            mma16816<T>(acc[0], a, b0);
            mma16816<T>(acc[1], a, b1);
          }
#pragma unroll
          for (int x = 0; x < 2; ++x)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int ql = rt * 16 + g + (e < 2 ? 0 : 8);
              const int d = (dn + x) * 8 + t4 * 2 + (e & 1);
              if (qs + ql < Tq && d < D) atomicAdd(dqg + static_cast<int64_t>(ql) * p.ldq + d, acc[x][e]);
            }
        }
      }
    }
  }
  T* dkg = static_cast<T*>(p.dk) + static_cast<int64_t>(kbeg) * p.ldk + hk * D;
  T* dvg = static_cast<T*>(p.dv) + static_cast<int64_t>(kbeg) * p.ldk + hk * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = r ? key_hi : key_lo;
    if (key >= Tk) continue;
#pragma unroll
    for (int dn = 0; dn < DP / 8; ++dn)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int d = dn * 8 + t4 * 2 + c;
        if (d < D) {
          dkg[static_cast<int64_t>(key) * p.ldk + d] = from_f<T>(dk[dn][2 * r + c]);
          dvg[static_cast<int64_t>(key) * p.ldk + d] = from_f<T>(dv[dn][2 * r + c]);
        }
      }
  }
}

// ---- backward, SIMT ----------------------------------------------------------

// dK, dV: one warp per key (4 per block), lanes over the head dim; Q/dO tiles of
// 16 rows shared by the block.
template <typename T, int DP>
__global__ void __launch_bounds__(128) bwd_dkdv_simt_kernel(const Params p) {
  constexpr int KEYS = 4, BQ = 16;
  constexpr int NT = DP / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  float* sQ = reinterpret_cast<float*>(smem);  // [BQ][DP]
  float* sO = sQ + BQ * DP;                     // dO
  float* sL = sO + BQ * DP;
  float* sDl = sL + BQ;
  const auto [tile, hk, qbeg, Tq, kbeg, Tk] = seq_tile(p);
  const int k0 = tile * KEYS;
  if (k0 >= Tk) return;
  const int off = Tk - Tq, D = p.D;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int key = k0 + warp;
  const bool validk = key < Tk;
  float kr[NT], vr[NT], dk[NT], dv[NT];
  const auto [kg, vg] = kv_rows<T>(p, kbeg + key, hk);
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const int d = lane + 32 * t;
    kr[t] = validk && d < D ? to_f<T>(kg[d]) : 0.0f;
    vr[t] = validk && d < D ? to_f<T>(vg[d]) : 0.0f;
    dk[t] = dv[t] = 0.0f;
  }
  const int q_lo = p.causal ? max(0, k0 - off) : 0;
  for (int gi = 0; gi < p.G; ++gi) {
    const auto [qg, dog, lg, dlg] = head_rows<T>(p, qbeg, hk * p.G + gi);
    for (int qs = q_lo; qs < Tq; qs += BQ) {
      __syncthreads();
      load_rows2_f32<T, DP>(sQ, sO, DP, qg, dog, p.ldq, qs, BQ, Tq, D);
      load_row_stats(sL, sDl, lg, dlg, qs, BQ, Tq);
      __syncthreads();
      for (int r = 0; r < BQ; ++r) {
        const int q = qs + r;
        float s = 0.0f, dp = 0.0f;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          s = fmaf(kr[t], sQ[r * DP + lane + 32 * t], s);
          dp = fmaf(vr[t], sO[r * DP + lane + 32 * t], dp);
        }
        s = warp_sum(s);
        dp = warp_sum(dp);
        const bool ok = validk && q < Tq && (!p.causal || key <= q + off);
        const float pv = ok ? exp2f(s * p.scale_log2 - sL[r]) : 0.0f;
        const float ds = pv * (dp - sDl[r]) * p.scale;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          dv[t] = fmaf(pv, sO[r * DP + lane + 32 * t], dv[t]);
          dk[t] = fmaf(ds, sQ[r * DP + lane + 32 * t], dk[t]);
        }
      }
    }
  }
  if (!validk) return;
  T* dkg = static_cast<T*>(p.dk) + static_cast<int64_t>(kbeg + key) * p.ldk + hk * D;
  T* dvg = static_cast<T*>(p.dv) + static_cast<int64_t>(kbeg + key) * p.ldk + hk * D;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const int d = lane + 32 * t;
    if (d < D) {
      dkg[d] = from_f<T>(dk[t]);
      dvg[d] = from_f<T>(dv[t]);
    }
  }
}

// dQ: one warp per query row (4 per block), K/V tiles of 32 keys shared; lane j
// scores key j of the tile, then every lane accumulates its head-dim slice.
template <typename T, int DP>
__global__ void __launch_bounds__(128) bwd_dq_simt_kernel(const Params p) {
  constexpr int ROWS = 4, BC = 32, LDK = DP + 1, NT = DP / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  float* sK = reinterpret_cast<float*>(smem);
  float* sV = sK + BC * LDK;
  float* sQ = sV + BC * LDK;  // [ROWS][DP]
  float* sO = sQ + ROWS * DP;  // dO
  const auto [tile, h, qbeg, Tq, kbeg, Tk] = seq_tile(p);
  const int q0 = tile * ROWS;
  if (q0 >= Tq) return;
  const int hk = h / p.G, off = Tk - Tq, D = p.D;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int row = q0 + warp;
  const bool valid = row < Tq;
  const T* qg = static_cast<const T*>(p.q) + static_cast<int64_t>(qbeg + q0) * p.ldq + h * D;
  const T* dog = static_cast<const T*>(p.dout) + static_cast<int64_t>(qbeg + q0) * p.ldq + h * D;
  const auto [kg, vg] = kv_rows<T>(p, kbeg, hk);
  load_rows2_f32<T, DP>(sQ, sO, DP, qg, dog, p.ldq, 0, ROWS, Tq - q0, D);
  float lse2 = INFINITY, dl = 0.0f;
  if (valid) {
    const float lv = p.lse[static_cast<int64_t>(h) * p.total_q + qbeg + row];
    lse2 = lv == -INFINITY ? INFINITY : lv * kLog2e;
    dl = p.delta[static_cast<int64_t>(h) * p.total_q + qbeg + row];
  }
  const int kend = p.causal ? min(Tk, q0 + ROWS + off) : Tk;
  float dq[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) dq[t] = 0.0f;
  for (int k0 = 0; k0 < kend; k0 += BC) {
    __syncthreads();
    load_rows2_f32<T, DP>(sK, sV, LDK, kg, vg, p.ldk, k0, BC, Tk, D);
    __syncthreads();
    float s = 0.0f, dp = 0.0f;
    const float* qr = sQ + warp * DP;
    const float* orr = sO + warp * DP;
    const float* kr = sK + lane * LDK;
    const float* vr = sV + lane * LDK;
#pragma unroll 8
    for (int d = 0; d < DP; ++d) {
      s = fmaf(qr[d], kr[d], s);
      dp = fmaf(orr[d], vr[d], dp);
    }
    const int key = k0 + lane;
    const bool ok = valid && key < Tk && (!p.causal || key <= row + off);
    const float pv = ok ? exp2f(s * p.scale_log2 - lse2) : 0.0f;
    const float ds = pv * (dp - dl) * p.scale;
    for (int j = 0; j < BC; ++j) {
      const float dsj = __shfl_sync(0xffffffffu, ds, j);
      const float* kk = sK + j * LDK + lane;
#pragma unroll
      for (int t = 0; t < NT; ++t) dq[t] = fmaf(dsj, kk[32 * t], dq[t]);
    }
  }
  if (!valid) return;
  T* dqg = static_cast<T*>(p.dq) + static_cast<int64_t>(qbeg + row) * p.ldq + h * D;
#pragma unroll
  for (int t = 0; t < NT; ++t)
    if (lane + 32 * t < D) dqg[lane + 32 * t] = from_f<T>(dq[t]);
}

// ---- host side ---------------------------------------------------------------

Status check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status::Internal(std::string("attention: ") + what + ": " + cudaGetErrorString(e));
}

// Grow-only device workspace, kept between calls so that a call costs no
// cudaMalloc/cudaFree (which synchronize). Every use is ordered on the legacy
// default stream, so a later call's writes never overtake an earlier call's
// kernels; the mutex (held for a whole call, see Prepared) guards the host side.
struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
  Status reserve(size_t want) {
    want = std::max<size_t>(want, 256);
    if (want <= bytes) return Status::Ok();
    if (ptr) cudaFree(ptr);  // synchronizes: no kernel still uses the old buffer
    ptr = nullptr;
    bytes = 0;
    VP_RETURN_IF_ERROR(check(cudaMalloc(&ptr, want), "cudaMalloc (attention workspace)"));
    bytes = want;
    return Status::Ok();
  }
};

struct Workspaces {
  std::mutex mu;
  Workspace cu, delta, dq_acc;
};

Workspaces& workspaces() {
  static Workspaces* w = new Workspaces();  // never destroyed: no CUDA calls at process exit
  return *w;
}

template <typename K>
Status launch(K kernel, dim3 grid, int threads, size_t smem, const Params& p) {
  if (grid.x == 0 || grid.y == 0) return Status::Ok();
  if (smem > 48 * 1024)
    VP_RETURN_IF_ERROR(check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  static_cast<int>(smem)),
                             "cudaFuncSetAttribute (shared memory)"));
  kernel<<<grid, threads, smem>>>(p);
  return check(cudaGetLastError(), "kernel launch");
}

int padded_dim(int64_t d) { return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : 256; }

// The problem's host-side facts: cu_seqlens on the device, the longest sequences.
struct Prepared {
  std::unique_lock<std::mutex> lock{workspaces().mu};
  Params p{};
  int max_q = 0, max_k = 0;
};

Status prepare(const AttentionProblem& pr, Prepared* out) {
  if (!available()) return Status::Unavailable("attention: CUDA is unavailable: " + unavailable_reason());
  const int64_t B = pr.batch;
  std::vector<int32_t> host(2 * (B + 1));
  for (int64_t i = 0; i <= B; ++i) {
    host[i] = pr.cu_q[i];
    host[B + 1 + i] = pr.cu_k[i];
  }
  for (int64_t i = 0; i < B; ++i) {
    out->max_q = std::max(out->max_q, pr.cu_q[i + 1] - pr.cu_q[i]);
    out->max_k = std::max(out->max_k, pr.cu_k[i + 1] - pr.cu_k[i]);
  }
  // Grids: (tiles of the longest sequence) × batch in x, heads in y; the smallest
  // tiles (4 rows, the float32 kernels) give the largest x.
  const int64_t longest = std::max(out->max_q, out->max_k);
  const int64_t tiles = std::max<int64_t>(1, (longest + 3) / 4);
  const std::string grid =
      host::grid_problem("attention", tiles * std::max<int64_t>(1, B), std::max<int64_t>(1, pr.heads));
  if (!grid.empty()) return Status::Invalid(grid);
  Workspace& cu = workspaces().cu;
  VP_RETURN_IF_ERROR(cu.reserve(host.size() * sizeof(int32_t)));
  // Pageable memcpy on the legacy stream: ordered after earlier calls' kernels that read it.
  VP_RETURN_IF_ERROR(check(cudaMemcpy(cu.ptr, host.data(), host.size() * sizeof(int32_t), cudaMemcpyHostToDevice),
                           "copying cu_seqlens"));
  Params& p = out->p;
  p.cu_q = static_cast<const int32_t*>(cu.ptr);
  p.cu_k = p.cu_q + B + 1;
  p.batch = static_cast<int>(B);
  p.H = static_cast<int>(pr.heads);
  p.Hkv = static_cast<int>(pr.kv_heads);
  p.G = static_cast<int>(pr.heads / pr.kv_heads);
  p.D = static_cast<int>(pr.head_dim);
  p.total_q = pr.total_q;
  p.ldq = pr.heads * pr.head_dim;
  p.ldk = pr.kv_heads * pr.head_dim;
  p.scale = pr.scale;
  p.scale_log2 = pr.scale * kLog2e;
  p.causal = pr.causal;
  p.vec = pr.head_dim % 8 == 0;  // and every pointer 16-byte aligned: see set_pointers
  return Status::Ok();
}

bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* ptr : ptrs)
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  return true;
}

dim3 grid_for(int max_len, int block_rows, int batch, int heads, int* tiles) {
  *tiles = std::max(1, (max_len + block_rows - 1) / block_rows);
  if (max_len == 0) return dim3(0, 0, 1);
  return dim3(static_cast<unsigned>(*tiles) * static_cast<unsigned>(batch), static_cast<unsigned>(heads), 1);
}

// f(T{}) for the element type of dtype.
template <typename F>
Status with_dtype(DType dtype, const char* fn, F&& f) {
  switch (dtype) {
    case DType::kFloat32: return f(0.0f);
    case DType::kBFloat16: return f(__nv_bfloat16(0.0f));
    case DType::kFloat16: return f(__half(0.0f));
    default: return Status::Invalid(std::string(fn) + ": CUDA takes float32, bfloat16 or float16");
  }
}

// f(std::integral_constant<int, DP>{}) for the head dim D padded to DP in {32, 64, 128, 256}.
template <typename F>
Status with_padded_dim(int D, F&& f) {
  switch (padded_dim(D)) {
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    case 128: return f(std::integral_constant<int, 128>{});
    default: return f(std::integral_constant<int, 256>{});
  }
}

// The SIMT forward (float32; for 16-bit types, the tests' reference path).
template <typename T, int DP>
Status forward_simt(const Prepared& pp) {
  Params p = pp.p;
  const dim3 grid = grid_for(pp.max_q, 4, p.batch, p.H, &p.tiles);
  const size_t smem = (2 * 32 * (DP + 1) + 4 * DP) * sizeof(float);
  return launch(fwd_simt_kernel<T, DP>, grid, 128, smem, p);
}

template <typename T, int DP>
Status forward_typed(Prepared& pp) {
  Params p = pp.p;
  if constexpr (std::is_same_v<T, float>) {
    return forward_simt<T, DP>(pp);
  } else {
    const dim3 grid = grid_for(pp.max_q, 64, p.batch, p.H, &p.tiles);
    const size_t smem = 3 * 64 * (DP + 8) * sizeof(T);
    return launch(fwd_tc_kernel<T, DP>, grid, 128, smem, p);
  }
}

template <typename T, int DP>
Status backward_typed(Prepared& pp) {
  Params p = pp.p;
  const int64_t rows_heads = p.total_q * p.H;
  if (rows_heads > 0) {
    const int64_t blocks = (rows_heads * 32 + 255) / 256;
    delta_kernel<T><<<static_cast<unsigned>(std::min<int64_t>(blocks, 1 << 20)), 256>>>(p);
    VP_RETURN_IF_ERROR(check(cudaGetLastError(), "delta kernel launch"));
  }
  if constexpr (std::is_same_v<T, float>) {
    Params pk = p;
    const dim3 gk = grid_for(pp.max_k, 4, p.batch, p.Hkv, &pk.tiles);
    VP_RETURN_IF_ERROR(launch(bwd_dkdv_simt_kernel<T, DP>, gk, 128, (2 * 16 * DP + 32) * sizeof(float), pk));
    Params pq = p;
    const dim3 gq = grid_for(pp.max_q, 4, p.batch, p.H, &pq.tiles);
    return launch(bwd_dq_simt_kernel<T, DP>, gq, 128, (2 * 32 * (DP + 1) + 8 * DP) * sizeof(float), pq);
  } else {
    const int64_t n = p.total_q * p.H * p.D;
    Workspace& acc = workspaces().dq_acc;
    VP_RETURN_IF_ERROR(acc.reserve(static_cast<size_t>(n) * sizeof(float)));
    VP_RETURN_IF_ERROR(check(cudaMemsetAsync(acc.ptr, 0, static_cast<size_t>(n) * sizeof(float)), "cudaMemset"));
    p.dq_acc = static_cast<float*>(acc.ptr);
    constexpr int BR = DP <= 64 ? 64 : 32;
    const dim3 grid = grid_for(pp.max_k, 64, p.batch, p.Hkv, &p.tiles);
    const size_t smem = (2 * 64 * (DP + 8) + 2 * BR * (DP + 8) + BR * (64 + 8)) * sizeof(T) + 2 * BR * sizeof(float);
    VP_RETURN_IF_ERROR(launch(bwd_tc_kernel<T, DP, BR>, grid, 128, smem, p));
    if (n > 0) {
      const int64_t blocks = std::min<int64_t>((n + 255) / 256, 1 << 20);
      dq_convert_kernel<T><<<static_cast<unsigned>(blocks), 256>>>(p.dq_acc, static_cast<T*>(p.dq), n);
      VP_RETURN_IF_ERROR(check(cudaGetLastError(), "dq conversion launch"));
    }
    return Status::Ok();
  }
}

Status prepare_forward(const AttentionProblem& pr, const void* q, const void* k, const void* v, void* out,
                       float* lse, Prepared* pp) {
  VP_RETURN_IF_ERROR(prepare(pr, pp));
  pp->p.q = q;
  pp->p.k = k;
  pp->p.v = v;
  pp->p.out = out;
  pp->p.lse = lse;
  return Status::Ok();
}

}  // namespace

Status attention_forward(const AttentionProblem& pr, DType dtype, const void* q, const void* k, const void* v,
                         void* out, float* lse) {
  Prepared pp;
  VP_RETURN_IF_ERROR(prepare_forward(pr, q, k, v, out, lse, &pp));
  if (pr.total_q == 0) return Status::Ok();
  pp.p.vec = pp.p.vec && aligned16({q, k, v});
  VP_RETURN_IF_ERROR(with_dtype(dtype, "attention", [&](auto tag) {
    return with_padded_dim(pp.p.D, [&](auto dp) { return forward_typed<decltype(tag), decltype(dp)::value>(pp); });
  }));
  // NaN/Inf in q, k or v reach every output they touch (attention_nonfinite.cu).
  return nonfinite::propagate(dtype, q, k, v, out, lse, pp.p.cu_q, pp.p.cu_k, pp.p.batch, pp.p.H, pp.p.Hkv, pp.p.D,
                              pr.total_q, pr.total_k, pr.causal);
}

Status attention_backward(const AttentionProblem& pr, DType dtype, const void* dout, const void* q, const void* k,
                          const void* v, const void* out, const float* lse, void* dq, void* dk, void* dv) {
  Prepared pp;
  VP_RETURN_IF_ERROR(prepare(pr, &pp));
  Workspace& delta = workspaces().delta;
  VP_RETURN_IF_ERROR(delta.reserve(static_cast<size_t>(pr.heads * pr.total_q) * sizeof(float)));
  Params& p = pp.p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.dout = dout;
  p.lse = const_cast<float*>(lse);
  p.delta = static_cast<float*>(delta.ptr);
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  p.vec = p.vec && aligned16({q, k, v, dout});
  return with_dtype(dtype, "attention_backward", [&](auto tag) {
    return with_padded_dim(p.D, [&](auto dp) { return backward_typed<decltype(tag), decltype(dp)::value>(pp); });
  });
}

// Test hook (not in the public header): run the SIMT kernels for a 16-bit dtype
// too, so GPU tests can compare the tensor-core path with an independent one.
Status attention_forward_simt(const AttentionProblem& pr, DType dtype, const void* q, const void* k, const void* v,
                              void* out, float* lse) {
  Prepared pp;
  VP_RETURN_IF_ERROR(prepare_forward(pr, q, k, v, out, lse, &pp));
  if (pr.total_q == 0) return Status::Ok();
  pp.p.vec = false;
  return with_dtype(dtype, "attention_forward_simt", [&](auto tag) {
    return with_padded_dim(pp.p.D, [&](auto dp) { return forward_simt<decltype(tag), decltype(dp)::value>(pp); });
  });
}

}  // namespace vp::cuda
