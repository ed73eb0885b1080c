// vp::info_nce* — validation and CPU/CUDA dispatch of the fused InfoNCE loss.
#include "vp/infonce.h"

#include <cmath>
#include <cstdio>
#include <string>

#include "vp/cuda.h"

namespace vp {
namespace {

std::string str(int64_t v) { return std::to_string(v); }
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

Status expect_matrix(const char* fn, const char* name, const TensorView& t, int64_t rows, int64_t cols,
                     DType dtype, Device device) {
  if (t.ndim != 2 || t.shape[0] != rows || t.shape[1] != cols)
    return Status::Invalid(std::string(fn) + ": " + name + " must have shape [" + str(rows) + ", " +
                           str(cols) + "], got " + t.shape_string());
  if (t.dtype != dtype)
    return Status::Invalid(std::string(fn) + ": " + name + " must be " + dtype_name(dtype) + ", got " +
                           dtype_name(t.dtype));
  if (t.device != device)
    return Status::Invalid(std::string(fn) + ": " + name + " must be on " + device_name(device) +
                           ", got " + device_name(t.device));
  if (!t.data) return Status::Invalid(std::string(fn) + ": " + name + " has no data");
  return Status::Ok();
}

// Checks queries, keys, positive and the options; fills args' common part.
Status prepare(const char* fn, const TensorView& q, const TensorView& k, const TensorView& positive,
               const InfoNceOptions& opts, const TensorView& lse, InfoNceArgs* args) {
  if (q.ndim != 2) return Status::Invalid(std::string(fn) + ": queries must be 2-D [N, D], got " + q.shape_string());
  if (k.ndim != 2) return Status::Invalid(std::string(fn) + ": keys must be 2-D [M, D], got " + k.shape_string());
  const int64_t n = q.shape[0], d = q.shape[1], m = k.shape[0];
  if (n < 1) return Status::OutOfRange(std::string(fn) + ": queries must have at least one row");
  if (m < 1) return Status::OutOfRange(std::string(fn) + ": keys must have at least one row");
  if (d < 1) return Status::OutOfRange(std::string(fn) + ": queries and keys must have at least one column");
  VP_RETURN_IF_ERROR(expect_matrix(fn, "keys", k, m, d, q.dtype, q.device));
  if (!q.data) return Status::Invalid(std::string(fn) + ": queries has no data");
  if (q.device == Device::kCPU && q.dtype != DType::kFloat32)
    return Status::Invalid(std::string(fn) + ": CPU computes in float32, got queries of " + dtype_name(q.dtype));
  if (q.dtype == DType::kInt32) return Status::Invalid(std::string(fn) + ": queries must be a floating dtype, got int32");
  if (positive.ndim != 1 || positive.shape[0] != n)
    return Status::Invalid(std::string(fn) + ": positive must have " + str(n) + " entries (one per query), got shape " +
                           positive.shape_string());
  if (positive.dtype != DType::kInt32 || positive.device != Device::kCPU || !positive.data)
    return Status::Invalid(std::string(fn) + ": positive must be int32 host memory");
  const int32_t* pos = positive.as<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    if (pos[i] < 0 || pos[i] >= m)
      return Status::OutOfRange(std::string(fn) + ": positive[" + str(i) + "] must be a key index in [0, " + str(m) +
                                "), got " + str(pos[i]));
  if (!(opts.temperature > 0.0f) || !std::isfinite(opts.temperature) || !std::isfinite(1.0f / opts.temperature))
    return Status::OutOfRange(std::string(fn) + ": temperature must be a positive finite number whose inverse float32 can hold, got " +
                              num(opts.temperature));
  if (!std::isfinite(opts.grad_loss))
    return Status::OutOfRange(std::string(fn) + ": gradLoss must be finite, got " + num(opts.grad_loss));
  if (lse.ndim != 1 || lse.shape[0] != n)
    return Status::Invalid(std::string(fn) + ": lse must have shape [" + str(n) + "], got " + lse.shape_string());
  if (lse.dtype != DType::kFloat32 || lse.device != q.device || !lse.data)
    return Status::Invalid(std::string(fn) + ": lse must be float32 on " + device_name(q.device));
  args->fn = fn;
  args->queries = q;
  args->keys = k;
  args->positive = pos;
  args->opts = opts;
  args->lse = lse;
  return Status::Ok();
}

Status prepare_grads(const char* fn, const TensorView& q, const TensorView& k, const TensorView& dq,
                     const TensorView& dk, InfoNceArgs* args) {
  VP_RETURN_IF_ERROR(expect_matrix(fn, "dQueries", dq, q.shape[0], q.shape[1], q.dtype, q.device));
  VP_RETURN_IF_ERROR(expect_matrix(fn, "dKeys", dk, k.shape[0], k.shape[1], k.dtype, k.device));
  args->d_queries = dq;
  args->d_keys = dk;
  args->backward = true;
  return Status::Ok();
}

Status run(const InfoNceArgs& args, InfoNceResult* result) {
  if (args.queries.device == Device::kCUDA) return cuda::info_nce(args, result);
  return info_nce_cpu(args, result);
}

}  // namespace

Status info_nce(const TensorView& queries, const TensorView& keys, const TensorView& positive,
                const InfoNceOptions& opts, const TensorView& lse, double* loss) {
  InfoNceArgs args;
  VP_RETURN_IF_ERROR(prepare("infoNce", queries, keys, positive, opts, lse, &args));
  InfoNceResult r;
  VP_RETURN_IF_ERROR(run(args, &r));
  if (loss) *loss = r.loss;
  return Status::Ok();
}

Status info_nce_backward(const TensorView& queries, const TensorView& keys, const TensorView& lse,
                         const TensorView& positive, const InfoNceOptions& opts,
                         const TensorView& d_queries, const TensorView& d_keys,
                         double* d_log_temperature) {
  const char* fn = "infoNceBackward";
  InfoNceArgs args;
  VP_RETURN_IF_ERROR(prepare(fn, queries, keys, positive, opts, lse, &args));
  VP_RETURN_IF_ERROR(prepare_grads(fn, queries, keys, d_queries, d_keys, &args));
  args.forward = false;
  InfoNceResult r;
  VP_RETURN_IF_ERROR(run(args, &r));
  if (d_log_temperature) *d_log_temperature = r.d_log_temperature;
  return Status::Ok();
}

Status info_nce_with_grad(const TensorView& queries, const TensorView& keys,
                          const TensorView& positive, const InfoNceOptions& opts,
                          const TensorView& lse, const TensorView& d_queries,
                          const TensorView& d_keys, double* loss, double* d_log_temperature) {
  const char* fn = "infoNceWithGrad";
  InfoNceArgs args;
  VP_RETURN_IF_ERROR(prepare(fn, queries, keys, positive, opts, lse, &args));
  VP_RETURN_IF_ERROR(prepare_grads(fn, queries, keys, d_queries, d_keys, &args));
  InfoNceResult r;
  VP_RETURN_IF_ERROR(run(args, &r));
  if (loss) *loss = r.loss;
  if (d_log_temperature) *d_log_temperature = r.d_log_temperature;
  return Status::Ok();
}

}  // namespace vp
