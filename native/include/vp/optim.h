// vp/optim.h — the optimizer side of a training step, over flat float32 buffers.
//
//  * adamw_step: AdamW (Loshchilov & Hutter) with decoupled weight decay and
//    bias correction, in PyTorch's order of operations:
//        g  = grad * grad_scale
//        p  = p * (1 - lr * weight_decay)
//        m  = beta1 * m + (1 - beta1) * g
//        v  = beta2 * v + (1 - beta2) * g^2
//        p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)
//    `grad_scale` folds gradient clipping and gradient-accumulation averaging
//    into the update, so gradients are read once.
//  * global_grad_norm / clip_scale: the L2 norm over every gradient buffer
//    (double, over fixed blocks summed in order: the same bits for every
//    thread count) and the factor min(1, max_norm / (norm + 1e-6)).
//  * lr_at: linear warmup then cosine decay to min_lr.
//  * axpy: y += alpha·x over n floats (gradient accumulation, residual sums),
//    each sum formed in double and rounded once (what the same loop in
//    JavaScript gives, bit for bit); memory-bound, split over the pool.
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp {

struct AdamWConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  int64_t step = 1;          // 1-based: the step being taken (bias correction uses it)
  float grad_scale = 1.0f;   // multiply gradients by this first
};

// y[i] = float(double(y[i]) + alpha · double(x[i])) for i < n; x and y may be the same array.
Status axpy(float* y, const float* x, double alpha, int64_t n);

// One AdamW update of n parameters in place (param, m, v updated; grad read).
Status adamw_step(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWConfig& cfg);

// sqrt(sum over buffers of sum of squares). grads[i] has sizes[i] floats.
Status global_grad_norm(const float* const* grads, const int64_t* sizes, int count, double* norm);

// The scale that clips a gradient of norm `norm` to max_norm (1 when it is
// already within, or when max_norm <= 0, meaning no clipping).
double clip_scale(double norm, double max_norm);

// Scales every buffer by clip_scale(global norm, max_norm) in place; returns
// the norm before clipping in *norm (may be null).
Status clip_grad_norm(float* const* grads, const int64_t* sizes, int count, double max_norm,
                      double* norm);

struct LrSchedule {
  double base_lr = 1e-3;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
};

// Learning rate for 0-based `step`: base_lr * (step + 1) / warmup_steps while
// step < warmup_steps; then min_lr + (base_lr - min_lr) * (1 + cos(pi * s)) / 2
// with s = (step - warmup) / max(1, total - warmup) clamped to [0, 1].
double lr_at(const LrSchedule& s, int64_t step);

namespace cuda {
// adamw_step on device buffers (CPU-only builds: Status::Unavailable).
Status adamw_step(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWConfig& cfg);
// Sum of squares of n device floats, in double over fixed blocks (deterministic),
// into the host double *out.
Status sum_squares(const float* x, int64_t n, double* out);
}  // namespace cuda

}  // namespace vp
