// The VideoLM layer kernels and AdamW on CUDA (float32; vp/layers.h, vp/optim.h).
// Same semantics as the CPU kernels, and deterministic: every reduction has a
// fixed shape (block-wide trees of a fixed block size, or one thread per column
// walking the rows in order), never atomics on floats.
//
// Index arguments (ids, targets, positions) live on the device; they are
// checked by a small kernel before the main one so that a bad index is an
// OutOfRange status, not a wild read. That check synchronizes; the model (part
// 2) can validate once per batch on the host and call the kernels directly.
// Scratch comes from the pool (cuda/scratch_pool.h): no cudaMalloc/cudaFree, so
// no device-wide synchronization, per call. One block per row: rows must fit
// the grid's x dimension (kutil::check_grid).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernel_util.cuh"
#include "scratch_pool.h"
#include "row_lse.cuh"
#include "vp/cuda.h"
#include "vp/layers.h"
#include "vp/optim.h"

namespace vp::cuda {
namespace {

using kutil::block_reduce;
using kutil::check_grid;
using kutil::grid_for;
using kutil::kBlock;
using kutil::launch_status;
using kutil::warp_sum;
using kutil::warp_sum_d;
using kutil::warp_sum_ll;

Status check_available() {
  if (!available()) return Status::Unavailable("CUDA is unavailable: " + unavailable_reason());
  return Status::Ok();
}

// first index i with v[i] outside [lo, hi) (and != -1 when allow_ignore), or n.
__global__ void k_find_bad(const int32_t* v, int64_t n, int64_t lo, int64_t hi, bool allow_ignore,
                           unsigned long long* first) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int32_t x = v[i];
    if ((x < lo || x >= hi) && !(allow_ignore && x == -1)) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

Status check_indices(const char* fn, const char* arg, const int32_t* v, int64_t n, int64_t lo, int64_t hi,
                     bool allow_ignore) {
  if (n == 0) return Status::Ok();
  Scratch scratch;
  unsigned long long* first = nullptr;
  VP_RETURN_IF_ERROR(scratch.get(&first, 1, fn));
  unsigned long long init = static_cast<unsigned long long>(n), got = 0;
  VP_RETURN_IF_ERROR(copy_to_device(first, &init, sizeof init));
  k_find_bad<<<grid_for(n), kBlock>>>(v, n, lo, hi, allow_ignore, first);
  VP_RETURN_IF_ERROR(launch_status(fn));
  VP_RETURN_IF_ERROR(copy_to_host(&got, first, sizeof got));
  int32_t bad = 0;
  if (got < static_cast<unsigned long long>(n)) VP_RETURN_IF_ERROR(copy_to_host(&bad, v + got, sizeof bad));
  if (got < static_cast<unsigned long long>(n))
    return Status::OutOfRange(std::string(fn) + ": " + arg + "[" + std::to_string(got) + "] = " + std::to_string(bad) +
                              " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + ")" +
                              (allow_ignore ? " and is not the ignore index -1" : ""));
  return Status::Ok();
}

Status sizes(const char* fn, std::initializer_list<std::pair<int64_t, const char*>> pos,
             std::initializer_list<std::pair<int64_t, const char*>> nonneg) {
  for (auto [v, n] : pos)
    if (v <= 0) return Status::Invalid(std::string(fn) + ": " + n + " must be > 0, got " + std::to_string(v));
  for (auto [v, n] : nonneg)
    if (v < 0) return Status::Invalid(std::string(fn) + ": " + n + " must be >= 0, got " + std::to_string(v));
  return Status::Ok();
}

// ---- kernels ---------------------------------------------------------------------

__global__ void k_rmsnorm_fwd(const float* x, const float* g, int64_t d, float eps, float* y, float* rstd) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * d;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) ss += xr[j] * xr[j];
  ss = block_reduce(ss, sh, warp_sum, 0.f);
  const float rs = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  if (rstd && threadIdx.x == 0) rstd[r] = rs;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) y[r * d + j] = xr[j] * rs * g[j];
}

__global__ void k_rmsnorm_bwd(const float* dy, const float* x, const float* g, const float* rstd, int64_t d,
                              float eps, float* dx) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  const float *xr = x + r * d, *dyr = dy + r * d;
  float rs;
  if (rstd) {
    rs = rstd[r];
  } else {
    float ss = 0.f;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) ss += xr[j] * xr[j];
    ss = block_reduce(ss, sh, warp_sum, 0.f);
    rs = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  }
  float dot = 0.f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dot += g[j] * dyr[j] * xr[j];
  dot = block_reduce(dot, sh, warp_sum, 0.f);
  const float c = rs * rs * rs * dot / static_cast<float>(d);
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dx[r * d + j] = rs * g[j] * dyr[j] - c * xr[j];
}

// dgain[j] (+)= sum_r dy[r, j] * x[r, j] * rstd[r]: one thread per column, rows in order.
__global__ void k_rmsnorm_dgain(const float* dy, const float* x, const float* rstd, int64_t rows, int64_t d,
                                float eps, float* dgain, bool accumulate) {
  const int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (j >= d) return;
  float s = 0.f;
  for (int64_t r = 0; r < rows; ++r) s += dy[r * d + j] * x[r * d + j] * rstd[r];
  dgain[j] = accumulate ? dgain[j] + s : s;
}

__global__ void k_rstd(const float* x, int64_t d, float eps, float* rstd) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) ss += x[r * d + j] * x[r * d + j];
  ss = block_reduce(ss, sh, warp_sum, 0.f);
  if (threadIdx.x == 0) rstd[r] = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
}

__device__ __forceinline__ float sigmoidf_(float v) { return 1.0f / (1.0f + expf(-v)); }

__global__ void k_swiglu_fwd(const float* g, const float* u, int64_t rows, int64_t f, int64_t ld, float* h) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * f; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / f, j = i % f;
    const float gv = g[r * ld + j];
    h[i] = gv * sigmoidf_(gv) * u[r * ld + j];
  }
}

__global__ void k_swiglu_bwd(const float* dh, const float* g, const float* u, int64_t rows, int64_t f, int64_t ld,
                             float* dg, float* du) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * f; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / f, j = i % f, o = r * ld + j;
    const float gv = g[o], s = sigmoidf_(gv), d = dh[i], uv = u[o];
    du[o] = d * gv * s;
    dg[o] = d * uv * s * (1.0f + gv * (1.0f - s));
  }
}

__global__ void k_rope(const float* x, const int32_t* pos, int64_t tokens, int64_t heads, int64_t hd, double theta,
                       bool inverse, float* out) {
  const int64_t half = hd / 2, total = tokens * heads * half;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t k = i % half, th = i / half;  // th = t * heads + h
    const int64_t t = th / heads;
    const double a = static_cast<double>(pos[t]) * pow(theta, -2.0 * static_cast<double>(k) / static_cast<double>(hd));
    double sd, cd;
    sincos(a, &sd, &cd);
    const float c = static_cast<float>(cd), s = static_cast<float>(inverse ? -sd : sd);
    const float* xi = x + th * hd;
    const float x1 = xi[k], x2 = xi[k + half];
    out[th * hd + k] = x1 * c - x2 * s;
    out[th * hd + k + half] = x2 * c + x1 * s;
  }
}

__global__ void k_embed_fwd(const float* table, int64_t d, const int32_t* ids, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * d; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = table[static_cast<int64_t>(ids[i / d]) * d + i % d];
}

__global__ void k_embed_bwd(const float* dout, const int64_t* start, const int64_t* order, int64_t vocab, int64_t d,
                            float* dtable, bool accumulate) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < vocab * d; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t v = i / d, j = i % d;
    float s = accumulate ? dtable[i] : 0.f;
    for (int64_t k = start[v]; k < start[v + 1]; ++k) s += dout[order[k] * d + j];
    dtable[i] = s;
  }
}

__global__ void k_ce_rows(const float* logits, const int32_t* t, int64_t v, float* lse, double* row_loss) {
  const int64_t r = blockIdx.x;
  const float* x = logits + r * v;
  const rowlse::State st = rowlse::block_row(x, v, 1.0f);
  if (threadIdx.x == 0) {
    // loss = (max - x[t]) + log(sum exp(x - max)): no large lse that float would round.
    const float m = st.m;
    const double ls = m == -INFINITY ? 0.0 : log(static_cast<double>(st.bad ? NAN : st.s));
    if (lse) lse[r] = m == -INFINITY ? -INFINITY : static_cast<float>(m + ls);
    row_loss[r] = t[r] >= 0 ? (static_cast<double>(m) - x[t[r]]) + ls : 0.0;
  }
}

// One block: out[0] = sum of row_loss (double, fixed tree), out_count[0] = targets != -1
// (counted in 64-bit integers: exact for any n).
__global__ void k_ce_total(const double* row_loss, const int32_t* t, int64_t n, double* total, long long* count) {
  __shared__ double shd[32];
  __shared__ long long shc[32];
  double s = 0.0;
  long long c = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    if (row_loss) s += row_loss[i];
    c += t[i] >= 0 ? 1 : 0;
  }
  s = block_reduce(s, shd, warp_sum_d, 0.0);
  c = block_reduce(c, shc, warp_sum_ll, 0LL);
  if (threadIdx.x == 0) {
    if (total) *total = s;
    *count = c;
  }
}

__global__ void k_ce_bwd(const float* logits, const int32_t* t, const float* lse, int64_t v, float grad_loss,
                         const long long* count, float* d) {
  const int64_t r = blockIdx.x;
  const float* x = logits + r * v;
  float* dr = d + r * v;
  const int32_t tr = t[r];
  if (tr < 0) {
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) dr[j] = 0.f;
    return;
  }
  const float l = lse ? lse[r] : rowlse::lse(rowlse::block_row(x, v, 1.0f));
  const long long cnt = *count;
  const float scale = cnt > 0 ? static_cast<float>(static_cast<double>(grad_loss) / static_cast<double>(cnt)) : 0.f;
  __syncthreads();  // in place (d == logits): every thread has read what it needs of row r's max/sum above
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float p = rowlse::scaled_softmax(x[j], l, scale);
    dr[j] = j == tr ? p - scale : p;
  }
}

__global__ void k_adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                        float decay, float bc1, float inv_sqrt_bc2, float gs) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float gi = g[i] * gs;
    const float mi = b1 * m[i] + (1.f - b1) * gi;
    const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - (lr / bc1) * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace

// ---- entry points ---------------------------------------------------------------------

Status rmsnorm_forward(const float* x, const float* gain, int64_t rows, int64_t dim, float eps, float* y, float* rstd) {
  VP_RETURN_IF_ERROR(sizes("rmsnorm_forward", {{dim, "dim"}}, {{rows, "rows"}}));
  VP_RETURN_IF_ERROR(check_available());
  if (rows == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(check_grid("rmsnorm_forward", rows));
  k_rmsnorm_fwd<<<static_cast<unsigned>(rows), kBlock>>>(x, gain, dim, eps, y, rstd);
  return launch_status("rmsnorm_forward");
}

Status rmsnorm_backward(const float* dy, const float* x, const float* gain, const float* rstd, int64_t rows,
                        int64_t dim, float eps, float* dx, float* dgain, bool accumulate) {
  VP_RETURN_IF_ERROR(sizes("rmsnorm_backward", {{dim, "dim"}}, {{rows, "rows"}}));
  VP_RETURN_IF_ERROR(check_available());
  Scratch scratch;
  if (rows > 0) {
    VP_RETURN_IF_ERROR(check_grid("rmsnorm_backward", rows));
    if (!rstd && dgain) {
      float* own = nullptr;
      VP_RETURN_IF_ERROR(scratch.get(&own, static_cast<size_t>(rows), "rmsnorm_backward"));
      k_rstd<<<static_cast<unsigned>(rows), kBlock>>>(x, dim, eps, own);
      rstd = own;
    }
    k_rmsnorm_bwd<<<static_cast<unsigned>(rows), kBlock>>>(dy, x, gain, rstd, dim, eps, dx);
  }
  if (dgain) k_rmsnorm_dgain<<<grid_for(dim), kBlock>>>(dy, x, rstd, rows, dim, eps, dgain, accumulate);
  return launch_status("rmsnorm_backward");
}

Status swiglu_forward(const float* gate, const float* up, int64_t rows, int64_t ffn, int64_t ld_in, float* h) {
  VP_RETURN_IF_ERROR(sizes("swiglu_forward", {{ffn, "ffn"}}, {{rows, "rows"}}));
  if (ld_in < ffn) return Status::Invalid("swiglu_forward: ld_in must be >= ffn");
  VP_RETURN_IF_ERROR(check_available());
  if (rows == 0) return Status::Ok();
  k_swiglu_fwd<<<grid_for(rows * ffn), kBlock>>>(gate, up, rows, ffn, ld_in, h);
  return launch_status("swiglu_forward");
}

Status swiglu_backward(const float* dh, const float* gate, const float* up, int64_t rows, int64_t ffn, int64_t ld_in,
                       float* dgate, float* dup) {
  VP_RETURN_IF_ERROR(sizes("swiglu_backward", {{ffn, "ffn"}}, {{rows, "rows"}}));
  if (ld_in < ffn) return Status::Invalid("swiglu_backward: ld_in must be >= ffn");
  VP_RETURN_IF_ERROR(check_available());
  if (rows == 0) return Status::Ok();
  k_swiglu_bwd<<<grid_for(rows * ffn), kBlock>>>(dh, gate, up, rows, ffn, ld_in, dgate, dup);
  return launch_status("swiglu_backward");
}

Status rope_apply(const float* x, const int32_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
                  float theta, bool inverse, float* out) {
  VP_RETURN_IF_ERROR(sizes("rope_apply", {{heads, "heads"}, {head_dim, "head_dim"}}, {{tokens, "tokens"}}));
  if (head_dim % 2 != 0) return Status::Invalid("rope_apply: head_dim must be even, got " + std::to_string(head_dim));
  if (!(theta > 1.0f)) return Status::Invalid("rope_apply: theta must be > 1");
  VP_RETURN_IF_ERROR(check_available());
  if (tokens == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(check_indices("rope_apply", "positions", positions, tokens, 0, INT32_MAX, false));
  k_rope<<<grid_for(tokens * heads * (head_dim / 2)), kBlock>>>(x, positions, tokens, heads, head_dim, theta, inverse, out);
  return launch_status("rope_apply");
}

Status embedding_forward(const float* table, int64_t vocab, int64_t dim, const int32_t* ids, int64_t n, float* out) {
  VP_RETURN_IF_ERROR(sizes("embedding_forward", {{vocab, "vocab"}, {dim, "dim"}}, {{n, "n"}}));
  VP_RETURN_IF_ERROR(check_available());
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(check_indices("embedding_forward", "ids", ids, n, 0, vocab, false));
  k_embed_fwd<<<grid_for(n * dim), kBlock>>>(table, dim, ids, n, out);
  return launch_status("embedding_forward");
}

Status embedding_backward(const float* dout, const int32_t* ids, int64_t n, int64_t vocab, int64_t dim, float* dtable,
                          bool accumulate) {
  VP_RETURN_IF_ERROR(sizes("embedding_backward", {{vocab, "vocab"}, {dim, "dim"}}, {{n, "n"}}));
  VP_RETURN_IF_ERROR(check_available());
  // Stable counting sort of the rows by id, on the host (ids are n int32 values).
  std::vector<int32_t> h_ids(n);
  if (n > 0) VP_RETURN_IF_ERROR(copy_to_host(h_ids.data(), ids, static_cast<size_t>(n) * sizeof(int32_t)));
  for (int64_t i = 0; i < n; ++i)
    if (h_ids[i] < 0 || h_ids[i] >= vocab)
      return Status::OutOfRange("embedding_backward: ids[" + std::to_string(i) + "] = " + std::to_string(h_ids[i]) +
                                " is outside [0, " + std::to_string(vocab) + ")");
  std::vector<int64_t> start(vocab + 1, 0), order(std::max<int64_t>(n, 1));
  for (int64_t i = 0; i < n; ++i) ++start[h_ids[i] + 1];
  for (int64_t v = 0; v < vocab; ++v) start[v + 1] += start[v];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; ++i) order[fill[h_ids[i]]++] = i;
  }
  Scratch scratch;
  int64_t *d_start = nullptr, *d_order = nullptr;
  VP_RETURN_IF_ERROR(scratch.get(&d_start, start.size(), "embedding_backward"));
  VP_RETURN_IF_ERROR(scratch.get(&d_order, order.size(), "embedding_backward"));
  // Pageable copies: the host vectors may be freed as soon as these return.
  VP_RETURN_IF_ERROR(copy_to_device(d_start, start.data(), start.size() * sizeof(int64_t)));
  VP_RETURN_IF_ERROR(copy_to_device(d_order, order.data(), order.size() * sizeof(int64_t)));
  k_embed_bwd<<<grid_for(vocab * dim), kBlock>>>(dout, d_start, d_order, vocab, dim, dtable, accumulate);
  return launch_status("embedding_backward");
}

Status cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t vocab, float* loss,
                             float* lse, int64_t* count) {
  VP_RETURN_IF_ERROR(sizes("cross_entropy_forward", {{vocab, "vocab"}}, {{n, "n"}}));
  if (!loss) return Status::Invalid("cross_entropy_forward: loss is null");
  VP_RETURN_IF_ERROR(check_available());
  if (n == 0) {
    *loss = 0.f;
    if (count) *count = 0;
    return Status::Ok();
  }
  VP_RETURN_IF_ERROR(check_grid("cross_entropy_forward", n));
  VP_RETURN_IF_ERROR(check_indices("cross_entropy_forward", "targets", targets, n, 0, vocab, true));
  Scratch scratch;
  double* row_loss = nullptr;
  VP_RETURN_IF_ERROR(scratch.get(&row_loss, static_cast<size_t>(n + 2), "cross_entropy_forward"));
  double* total = row_loss + n;
  long long* cnt = reinterpret_cast<long long*>(total + 1);
  k_ce_rows<<<static_cast<unsigned>(n), kBlock>>>(logits, targets, vocab, lse, row_loss);
  k_ce_total<<<1, 1024>>>(row_loss, targets, n, total, cnt);
  VP_RETURN_IF_ERROR(launch_status("cross_entropy_forward"));
  double h_total = 0;
  long long h_cnt = 0;
  VP_RETURN_IF_ERROR(copy_to_host(&h_total, total, sizeof h_total));
  VP_RETURN_IF_ERROR(copy_to_host(&h_cnt, cnt, sizeof h_cnt));
  *loss = h_cnt > 0 ? static_cast<float>(h_total / static_cast<double>(h_cnt)) : 0.f;
  if (count) *count = h_cnt;
  return Status::Ok();
}

Status cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse, int64_t n, int64_t vocab,
                              float grad_loss, float* dlogits) {
  VP_RETURN_IF_ERROR(sizes("cross_entropy_backward", {{vocab, "vocab"}}, {{n, "n"}}));
  VP_RETURN_IF_ERROR(check_available());
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(check_grid("cross_entropy_backward", n));
  VP_RETURN_IF_ERROR(check_indices("cross_entropy_backward", "targets", targets, n, 0, vocab, true));
  Scratch scratch;
  long long* cnt = nullptr;
  VP_RETURN_IF_ERROR(scratch.get(&cnt, 1, "cross_entropy_backward"));
  k_ce_total<<<1, 1024>>>(nullptr, targets, n, nullptr, cnt);
  k_ce_bwd<<<static_cast<unsigned>(n), kBlock>>>(logits, targets, lse, vocab, grad_loss, cnt, dlogits);
  return launch_status("cross_entropy_backward");
}

Status adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWConfig& c) {
  if (n < 0) return Status::Invalid("adamw_step: n must be >= 0");
  if (c.step < 1) return Status::Invalid("adamw_step: step is 1-based, got " + std::to_string(c.step));
  if (!(c.beta1 >= 0.0f && c.beta1 < 1.0f) || !(c.beta2 >= 0.0f && c.beta2 < 1.0f))
    return Status::Invalid("adamw_step: beta1 and beta2 must be in [0, 1)");
  if (!(c.eps > 0.0f)) return Status::Invalid("adamw_step: eps must be > 0");
  VP_RETURN_IF_ERROR(check_available());
  if (n == 0) return Status::Ok();
  const double bc1 = 1.0 - std::pow(static_cast<double>(c.beta1), static_cast<double>(c.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(c.beta2), static_cast<double>(c.step));
  k_adamw<<<grid_for(n), kBlock>>>(param, grad, m, v, n, c.lr, c.beta1, c.beta2, c.eps, 1.0f - c.lr * c.weight_decay,
                                    static_cast<float>(bc1), static_cast<float>(1.0 / std::sqrt(bc2)), c.grad_scale);
  return launch_status("adamw_step");
}

}  // namespace vp::cuda
