// AdamW, global-norm clipping, the LR schedule and axpy (vp/optim.h) on the CPU.
// Cost: each pass is one read (axpy, the norm) or read-modify-write (AdamW) of
// its buffers, memory-bound, split over the thread pool in fixed blocks.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "layers_kernels.h"
#include "vp/layers.h"
#include "vp/optim.h"
#include "vp/thread_pool.h"

namespace vp {

Status axpy(float* y, const float* x, double alpha, int64_t n) {
  if (n < 0) return Status::Invalid("axpy: n must be >= 0, got " + std::to_string(n));
  if (n == 0) return Status::Ok();
  if (!y || !x) return Status::Invalid("axpy: x and y must not be null");
  parallel_for(n, 1 << 16, [&](int64_t a, int64_t b, int) {
    if (alpha == 1.0)
      for (int64_t i = a; i < b; ++i) y[i] = static_cast<float>(static_cast<double>(y[i]) + static_cast<double>(x[i]));
    else
      for (int64_t i = a; i < b; ++i) y[i] = static_cast<float>(static_cast<double>(y[i]) + alpha * static_cast<double>(x[i]));
  });
  return Status::Ok();
}

Status adamw_step(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWConfig& c) {
  if (n < 0) return Status::Invalid("adamw_step: n must be >= 0, got " + std::to_string(n));
  if (c.step < 1) return Status::Invalid("adamw_step: step is 1-based, got " + std::to_string(c.step));
  if (!(c.beta1 >= 0.0f && c.beta1 < 1.0f)) return Status::Invalid("adamw_step: beta1 must be in [0, 1)");
  if (!(c.beta2 >= 0.0f && c.beta2 < 1.0f)) return Status::Invalid("adamw_step: beta2 must be in [0, 1)");
  if (!(c.eps > 0.0f)) return Status::Invalid("adamw_step: eps must be > 0");
  if (!(c.lr >= 0.0f) || !std::isfinite(c.lr)) return Status::Invalid("adamw_step: lr must be a finite number >= 0");
  if (!(c.weight_decay >= 0.0f)) return Status::Invalid("adamw_step: weight_decay must be >= 0");
  if (!std::isfinite(c.grad_scale)) return Status::Invalid("adamw_step: grad_scale must be finite");
  if (n == 0) return Status::Ok();
  if (!param || !grad || !m || !v) return Status::Invalid("adamw_step: param, grad, m and v must not be null");
  detail::AdamWScalars s;
  s.lr = c.lr;
  s.beta1 = c.beta1;
  s.beta2 = c.beta2;
  s.eps = c.eps;
  s.weight_decay = c.weight_decay;
  s.bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(c.beta1), static_cast<double>(c.step)));
  s.bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(c.beta2), static_cast<double>(c.step)));
  s.grad_scale = c.grad_scale;
  const auto& k = detail::layer_kernels();
  parallel_for(n, 16384, [&](int64_t a, int64_t b, int) {
    k.adamw(param + a, grad + a, m + a, v + a, b - a, s);
  });
  return Status::Ok();
}

Status global_grad_norm(const float* const* grads, const int64_t* sizes, int count, double* norm) {
  if (count < 0) return Status::Invalid("global_grad_norm: count must be >= 0");
  if (!norm) return Status::Invalid("global_grad_norm: norm is null");
  double s = 0.0;
  for (int i = 0; i < count; ++i) {
    if (sizes[i] < 0) return Status::Invalid("global_grad_norm: sizes[" + std::to_string(i) + "] < 0");
    if (sizes[i] > 0 && grads[i] == nullptr)
      return Status::Invalid("global_grad_norm: grads[" + std::to_string(i) + "] is null");
    s += sum_squares(grads[i], sizes[i]);
  }
  *norm = std::sqrt(s);
  return Status::Ok();
}

double clip_scale(double norm, double max_norm) {
  if (!(max_norm > 0.0) || !(norm > max_norm)) return 1.0;
  return max_norm / (norm + 1e-6);
}

Status clip_grad_norm(float* const* grads, const int64_t* sizes, int count, double max_norm,
                      double* norm) {
  double nrm = 0.0;
  VP_RETURN_IF_ERROR(global_grad_norm(grads, sizes, count, &nrm));
  if (norm) *norm = nrm;
  if (!std::isfinite(nrm))
    return Status::Invalid("clip_grad_norm: the gradient norm is not finite (" + std::to_string(nrm) + ")");
  const float sc = static_cast<float>(clip_scale(nrm, max_norm));
  if (sc == 1.0f) return Status::Ok();
  const auto& k = detail::layer_kernels();
  for (int i = 0; i < count; ++i) {
    float* g = grads[i];
    parallel_for(sizes[i], 32768, [&](int64_t a, int64_t b, int) { k.scale(g + a, b - a, sc); });
  }
  return Status::Ok();
}

double lr_at(const LrSchedule& s, int64_t step) {
  if (step < 0) step = 0;
  if (s.warmup_steps > 0 && step < s.warmup_steps)
    return s.base_lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, s.total_steps - s.warmup_steps));
  double f = static_cast<double>(step - s.warmup_steps) / span;
  f = std::clamp(f, 0.0, 1.0);
  return s.min_lr + (s.base_lr - s.min_lr) * 0.5 * (1.0 + std::cos(M_PI * f));
}

}  // namespace vp
