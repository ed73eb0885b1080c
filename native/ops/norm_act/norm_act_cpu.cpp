// LayerNorm and GELU on the CPU (vp/norm_act.h). Threads split rows (LayerNorm)
// or element ranges (GELU) through vp::parallel_for. Row statistics use double
// accumulators (two passes: mean, then centred variance). dgamma/dbeta are
// summed per fixed 64-row block and the partials added in block order, so the
// bits do not depend on the thread count. Cost: O(rows·dim) / O(n), memory
// bound; GELU's erf/tanh dominate its time.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/arg_checks.h"
#include "vp/norm_act.h"
#include "vp/thread_pool.h"

namespace vp {
namespace {

constexpr int64_t kRowBlock = 64;

using detail::need;

int64_t row_grain(int64_t dim) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, dim)); }

// Mean and rstd of one row, in double.
void row_stats(const float* x, int64_t dim, float eps, double* mean_out, double* rstd_out) {
  double s = 0.0;
  for (int64_t j = 0; j < dim; ++j) s += x[j];
  const double m = s / static_cast<double>(dim);
  double v = 0.0;
  for (int64_t j = 0; j < dim; ++j) {
    const double c = x[j] - m;
    v += c * c;
  }
  *mean_out = m;
  *rstd_out = 1.0 / std::sqrt(v / static_cast<double>(dim) + static_cast<double>(eps));
}

constexpr float kSqrt1_2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kTanhC = 0.044715f;
constexpr float kQuickC = 1.702f;

inline float gelu1(float x, GeluKind k) {
  switch (k) {
    case GeluKind::kErf: return 0.5f * x * (1.0f + std::erf(x * kSqrt1_2));
    case GeluKind::kTanh: return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kTanhC * x * x * x)));
    default: return x / (1.0f + std::exp(-kQuickC * x));
  }
}

inline float gelu_grad1(float x, GeluKind k) {
  switch (k) {
    case GeluKind::kErf: return 0.5f * (1.0f + std::erf(x * kSqrt1_2)) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
    case GeluKind::kTanh: {
      const float t = std::tanh(kSqrt2OverPi * (x + kTanhC * x * x * x));
      return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kTanhC * x * x);
    }
    default: {
      const float s = 1.0f / (1.0f + std::exp(-kQuickC * x));
      return s + kQuickC * x * s * (1.0f - s);
    }
  }
}

Status check_kind(const char* fn, GeluKind k) {
  const int32_t v = static_cast<int32_t>(k);
  if (v < 0 || v > 2) return Status::Invalid(std::string(fn) + ": kind must be 0 (erf), 1 (tanh) or 2 (quick), got " + std::to_string(v));
  return Status::Ok();
}

}  // namespace

Status layernorm_forward(const float* x, const float* gamma, const float* beta, int64_t rows,
                         int64_t dim, float eps, float* y, float* mean, float* rstd) {
  const char* fn = "layernorm_forward";
  VP_RETURN_IF_ERROR(detail::check_rows_dim(fn, rows, dim));
  if (!(eps >= 0.0f) || !std::isfinite(eps)) return Status::Invalid("layernorm_forward: eps must be a finite number >= 0");
  if (rows == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(gamma, fn, "gamma"));
  VP_RETURN_IF_ERROR(need(y, fn, "y"));
  parallel_for(rows, row_grain(dim), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      double m, rs;
      row_stats(xr, dim, eps, &m, &rs);
      const float mf = static_cast<float>(m), rf = static_cast<float>(rs);
      if (beta)
        for (int64_t j = 0; j < dim; ++j) yr[j] = (xr[j] - mf) * rf * gamma[j] + beta[j];
      else
        for (int64_t j = 0; j < dim; ++j) yr[j] = (xr[j] - mf) * rf * gamma[j];
      if (mean) mean[r] = mf;
      if (rstd) rstd[r] = rf;
    }
  });
  return Status::Ok();
}

Status layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                          const float* rstd, int64_t rows, int64_t dim, float eps, float* dx,
                          float* dgamma, float* dbeta, bool accumulate) {
  const char* fn = "layernorm_backward";
  VP_RETURN_IF_ERROR(detail::check_rows_dim(fn, rows, dim));
  if (!(eps >= 0.0f) || !std::isfinite(eps)) return Status::Invalid("layernorm_backward: eps must be a finite number >= 0");
  if ((mean == nullptr) != (rstd == nullptr)) return Status::Invalid("layernorm_backward: mean and rstd must both be given or both be null");
  if (rows > 0) {
    VP_RETURN_IF_ERROR(need(dy, fn, "dy"));
    VP_RETURN_IF_ERROR(need(x, fn, "x"));
    VP_RETURN_IF_ERROR(need(gamma, fn, "gamma"));
    VP_RETURN_IF_ERROR(need(dx, fn, "dx"));
  }
  const int64_t nb = (rows + kRowBlock - 1) / kRowBlock;
  const bool want_params = dgamma != nullptr || dbeta != nullptr;
  std::vector<float> part(want_params ? static_cast<size_t>(nb * 2 * dim) : 0, 0.0f);
  parallel_for(nb, 1, [&](int64_t b0, int64_t b1, int) {
    std::vector<float> xhat(static_cast<size_t>(dim));
    for (int64_t b = b0; b < b1; ++b) {
      float* pg = want_params ? part.data() + b * 2 * dim : nullptr;
      float* pb = want_params ? pg + dim : nullptr;
      for (int64_t r = b * kRowBlock; r < std::min(rows, (b + 1) * kRowBlock); ++r) {
        const float* xr = x + r * dim;
        const float* dyr = dy + r * dim;
        double m, rs;
        if (mean) {
          m = mean[r];
          rs = rstd[r];
        } else {
          row_stats(xr, dim, eps, &m, &rs);
          m = static_cast<float>(m);
          rs = static_cast<float>(rs);
        }
        const float mf = static_cast<float>(m), rf = static_cast<float>(rs);
        double sg = 0.0, sgx = 0.0;
        for (int64_t j = 0; j < dim; ++j) {
          const float xh = (xr[j] - mf) * rf;
          xhat[j] = xh;
          const float g = dyr[j] * gamma[j];
          sg += g;
          sgx += static_cast<double>(g) * xh;
          if (pg) {
            pg[j] += dyr[j] * xh;
            pb[j] += dyr[j];
          }
        }
        const float a = static_cast<float>(sg / static_cast<double>(dim));
        const float c = static_cast<float>(sgx / static_cast<double>(dim));
        float* dxr = dx + r * dim;
        for (int64_t j = 0; j < dim; ++j) dxr[j] = rf * (dyr[j] * gamma[j] - a - xhat[j] * c);
      }
    }
  });
  if (want_params) {
    parallel_for(dim, 256, [&](int64_t c0, int64_t c1, int) {
      for (int64_t c = c0; c < c1; ++c) {
        float sg = 0.0f, sb = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          sg += part[b * 2 * dim + c];
          sb += part[b * 2 * dim + dim + c];
        }
        if (dgamma) dgamma[c] = accumulate ? dgamma[c] + sg : sg;
        if (dbeta) dbeta[c] = accumulate ? dbeta[c] + sb : sb;
      }
    });
  }
  return Status::Ok();
}

Status gelu_forward(const float* x, int64_t n, GeluKind kind, float* y) {
  const char* fn = "gelu_forward";
  if (n < 0) return Status::Invalid("gelu_forward: n must be >= 0, got " + std::to_string(n));
  VP_RETURN_IF_ERROR(check_kind(fn, kind));
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(y, fn, "y"));
  parallel_for(n, 8192, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) y[i] = gelu1(x[i], kind);
  });
  return Status::Ok();
}

Status gelu_backward(const float* dy, const float* x, int64_t n, GeluKind kind, float* dx) {
  const char* fn = "gelu_backward";
  if (n < 0) return Status::Invalid("gelu_backward: n must be >= 0, got " + std::to_string(n));
  VP_RETURN_IF_ERROR(check_kind(fn, kind));
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(dy, fn, "dy"));
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(dx, fn, "dx"));
  parallel_for(n, 8192, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * gelu_grad1(x[i], kind);
  });
  return Status::Ok();
}

}  // namespace vp
