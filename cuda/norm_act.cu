// LayerNorm and GELU on CUDA (vp/norm_act.h, namespace vp::cuda): the ViT
// layers of the pretrained vision towers (lib/pretrained/vision.ts) on device.
//
// LayerNorm forward: one block per row; the row's sum and then its centred sum
// of squares are reduced in double (block_reduce of a fixed shape, so the bits
// do not depend on timing), as the CPU kernel does. Backward: one block per row
// for dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·gamma (sums in double);
// dgamma/dbeta: one thread per column walking the rows in increasing order
// (deterministic, no float atomics). GELU: element-wise grid-stride loops with
// the CPU kernel's formulas (erf, tanh approximation, quick).
// Cost: O(rows·dim) / O(n), memory bound; the column reduction reads dy and x
// once more.
#include <cuda_runtime.h>

#include <string>

#include "core/arg_checks.h"
#include "kernel_util.cuh"
#include "scratch_pool.h"
#include "vp/model_kernels.h"
#include "vp/norm_act.h"

namespace vp::cuda {
namespace {

using kutil::block_reduce;
using kutil::grid_for;
using kutil::kBlock;
using kutil::launch_status;
using kutil::warp_sum_d;

using ::vp::detail::need;

__device__ __forceinline__ double dsum(double v) { return warp_sum_d(v); }

// Mean and rstd of row r (every thread of the block gets them).
__device__ void row_stats(const float* xr, int64_t d, float eps, double* sh, double* mean, double* rstd) {
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += xr[j];
  s = block_reduce(s, sh, dsum, 0.0);
  const double m = s / static_cast<double>(d);
  double v = 0.0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const double c = static_cast<double>(xr[j]) - m;
    v += c * c;
  }
  v = block_reduce(v, sh, dsum, 0.0);
  *mean = m;
  *rstd = 1.0 / sqrt(v / static_cast<double>(d) + static_cast<double>(eps));
}

__global__ void k_ln_fwd(const float* __restrict__ x, const float* __restrict__ g, const float* __restrict__ b,
                         int64_t d, float eps, float* __restrict__ y, float* __restrict__ mean,
                         float* __restrict__ rstd) {
  __shared__ double sh[32];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * d;
  double m, rs;
  row_stats(xr, d, eps, sh, &m, &rs);
  const float mf = static_cast<float>(m), rf = static_cast<float>(rs);
  if (threadIdx.x == 0) {
    if (mean) mean[r] = mf;
    if (rstd) rstd[r] = rf;
  }
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const float v = (xr[j] - mf) * rf * g[j];
    y[r * d + j] = b ? v + b[j] : v;
  }
}

__global__ void k_ln_bwd_dx(const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ g,
                            const float* __restrict__ mean, const float* __restrict__ rstd, int64_t d, float eps,
                            float* __restrict__ dx) {
  __shared__ double sh[32];
  const int64_t r = blockIdx.x;
  const float *xr = x + r * d, *dyr = dy + r * d;
  float mf, rf;
  if (mean && rstd) {
    mf = mean[r], rf = rstd[r];
  } else {
    double m, rs;
    row_stats(xr, d, eps, sh, &m, &rs);
    mf = static_cast<float>(m), rf = static_cast<float>(rs);
  }
  double s1 = 0.0, s2 = 0.0;  // Σ g·dy, Σ g·dy·x̂
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const double gd = static_cast<double>(dyr[j]) * g[j];
    s1 += gd;
    s2 += gd * ((xr[j] - mf) * rf);
  }
  s1 = block_reduce(s1, sh, dsum, 0.0);
  s2 = block_reduce(s2, sh, dsum, 0.0);
  const float a = static_cast<float>(s1 / static_cast<double>(d)), c = static_cast<float>(s2 / static_cast<double>(d));
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const float xh = (xr[j] - mf) * rf;
    dx[r * d + j] = rf * (dyr[j] * g[j] - a - xh * c);
  }
}

// Column sums: dgamma[j] (+)= Σ_r dy[r, j]·x̂[r, j], dbeta[j] (+)= Σ_r dy[r, j], r ascending.
__global__ void k_ln_bwd_params(const float* __restrict__ dy, const float* __restrict__ x,
                                const float* __restrict__ mean, const float* __restrict__ rstd, int64_t rows,
                                int64_t d, float* __restrict__ dg, float* __restrict__ db, bool accumulate) {
  VP_GRID_STRIDE(j, d) {
    double sg = 0.0, sb = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const float v = dy[r * d + j];
      sg += static_cast<double>(v) * ((x[r * d + j] - mean[r]) * rstd[r]);
      sb += v;
    }
    if (dg) dg[j] = accumulate ? dg[j] + static_cast<float>(sg) : static_cast<float>(sg);
    if (db) db[j] = accumulate ? db[j] + static_cast<float>(sb) : static_cast<float>(sb);
  }
}

// Row statistics for the parameter gradients when the caller gave none.
__global__ void k_ln_stats(const float* __restrict__ x, int64_t d, float eps, float* __restrict__ mean,
                           float* __restrict__ rstd) {
  __shared__ double sh[32];
  const int64_t r = blockIdx.x;
  double m, rs;
  row_stats(x + r * d, d, eps, sh, &m, &rs);
  if (threadIdx.x == 0) mean[r] = static_cast<float>(m), rstd[r] = static_cast<float>(rs);
}

constexpr float kSqrt1_2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kTanhC = 0.044715f;
constexpr float kQuickC = 1.702f;

__device__ __forceinline__ float gelu1(float x, int k) {
  if (k == 0) return 0.5f * x * (1.0f + erff(x * kSqrt1_2));
  if (k == 1) return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kTanhC * x * x * x)));
  return x / (1.0f + expf(-kQuickC * x));
}

__device__ __forceinline__ float gelu_grad(float x, int k) {
  if (k == 0) return 0.5f * (1.0f + erff(x * kSqrt1_2)) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
  if (k == 1) {
    const float u = kSqrt2OverPi * (x + kTanhC * x * x * x);
    const float t = tanhf(u);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kTanhC * x * x);
  }
  const float s = 1.0f / (1.0f + expf(-kQuickC * x));
  return s + kQuickC * x * s * (1.0f - s);
}

__global__ void k_gelu_fwd(const float* __restrict__ x, int64_t n, int k, float* __restrict__ y) {
  VP_GRID_STRIDE(i, n) y[i] = gelu1(x[i], k);
}

// dx may alias dy: each element reads its own dy before writing.
__global__ void k_gelu_bwd(const float* dy, const float* __restrict__ x, int64_t n, int k, float* dx) {
  VP_GRID_STRIDE(i, n) dx[i] = dy[i] * gelu_grad(x[i], k);
}

Status check_kind(const char* fn, GeluKind kind) {
  const int k = static_cast<int>(kind);
  if (k < 0 || k > 2) return Status::Invalid(std::string(fn) + ": kind must be erf (0), tanh (1) or quick (2), got " + std::to_string(k));
  return Status::Ok();
}

}  // namespace

Status layernorm_forward(const float* x, const float* gamma, const float* beta, int64_t rows, int64_t dim, float eps,
                         float* y, float* mean, float* rstd) {
  const char* fn = "layernorm_forward (CUDA)";
  VP_RETURN_IF_ERROR(::vp::detail::check_rows_dim(fn, rows, dim));
  if (!(eps >= 0.0f) || !std::isfinite(eps)) return Status::Invalid(std::string(fn) + ": eps must be a finite number >= 0");
  if (rows == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(gamma, fn, "gamma"));
  VP_RETURN_IF_ERROR(need(y, fn, "y"));
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  VP_RETURN_IF_ERROR(kutil::check_grid(fn, rows));
  k_ln_fwd<<<static_cast<unsigned>(rows), kBlock>>>(x, gamma, beta, dim, eps, y, mean, rstd);
  return launch_status(fn);
}

Status layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                          int64_t rows, int64_t dim, float eps, float* dx, float* dgamma, float* dbeta,
                          bool accumulate) {
  const char* fn = "layernorm_backward (CUDA)";
  VP_RETURN_IF_ERROR(::vp::detail::check_rows_dim(fn, rows, dim));
  if ((mean == nullptr) != (rstd == nullptr))
    return Status::Invalid(std::string(fn) + ": mean and rstd must be given together (or both null)");
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  if (rows == 0) {
    // No rows: the parameter gradients are sums over nothing.
    if (!accumulate) {
      if (dgamma) VP_RETURN_IF_ERROR(fill_zero(dgamma, dim));
      if (dbeta) VP_RETURN_IF_ERROR(fill_zero(dbeta, dim));
    }
    return Status::Ok();
  }
  VP_RETURN_IF_ERROR(need(dy, fn, "dy"));
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(gamma, fn, "gamma"));
  VP_RETURN_IF_ERROR(need(dx, fn, "dx"));
  VP_RETURN_IF_ERROR(kutil::check_grid(fn, rows));
  Scratch scratch;
  const float *m = mean, *rs = rstd;
  if ((dgamma || dbeta) && !mean) {
    float *sm = nullptr, *sr = nullptr;
    VP_RETURN_IF_ERROR(scratch.get(&sm, static_cast<size_t>(rows), fn));
    VP_RETURN_IF_ERROR(scratch.get(&sr, static_cast<size_t>(rows), fn));
    k_ln_stats<<<static_cast<unsigned>(rows), kBlock>>>(x, dim, eps, sm, sr);
    VP_RETURN_IF_ERROR(launch_status(fn));
    m = sm, rs = sr;
  }
  // The parameter gradients first: dx may not alias dy here, but keeping this
  // order means they read dy before any later kernel could overwrite it.
  if (dgamma || dbeta) {
    k_ln_bwd_params<<<grid_for(dim, 128), 128>>>(dy, x, m, rs, rows, dim, dgamma, dbeta, accumulate);
    VP_RETURN_IF_ERROR(launch_status(fn));
  }
  k_ln_bwd_dx<<<static_cast<unsigned>(rows), kBlock>>>(dy, x, gamma, m, rs, dim, eps, dx);
  return launch_status(fn);
}

Status gelu_forward(const float* x, int64_t n, GeluKind kind, float* y) {
  const char* fn = "gelu_forward (CUDA)";
  if (n < 0) return Status::Invalid(std::string(fn) + ": n must be >= 0");
  VP_RETURN_IF_ERROR(check_kind(fn, kind));
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(y, fn, "y"));
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  k_gelu_fwd<<<grid_for(n), kBlock>>>(x, n, static_cast<int>(kind), y);
  return launch_status(fn);
}

Status gelu_backward(const float* dy, const float* x, int64_t n, GeluKind kind, float* dx) {
  const char* fn = "gelu_backward (CUDA)";
  if (n < 0) return Status::Invalid(std::string(fn) + ": n must be >= 0");
  VP_RETURN_IF_ERROR(check_kind(fn, kind));
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(dy, fn, "dy"));
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(dx, fn, "dx"));
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  k_gelu_bwd<<<grid_for(n), kBlock>>>(dy, x, n, static_cast<int>(kind), dx);
  return launch_status(fn);
}

}  // namespace vp::cuda
