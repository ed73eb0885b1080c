// Validation and dispatch of the token log-prob and GRPO kernels (vp/logprobs.h,
// vp/grpo.h). Every argument is checked here, before any kernel runs, with a
// message that names the argument (by its TypeScript name) and gives the
// expected and the actual value; the CPU and CUDA implementations then trust
// their inputs. Values that only a scan can check (targets in range, finite
// per-token inputs) are scanned here for CPU tensors; for CUDA tensors the
// TypeScript layer checks the host arrays before they are uploaded, except
// cuSeqlens (B + 1 offsets), which is copied back and checked here on either device.
#include <cmath>
#include <string>
#include <vector>

#include "grpo_cpu.h"
#include "vp/cuda.h"
#include "vp/grpo.h"
#include "vp/logprobs.h"
#include "vp/thread_pool.h"

namespace vp {
namespace {

std::string str(int64_t x) { return std::to_string(x); }

std::string num(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

bool present(const TensorView& t) { return t.data != nullptr || t.ndim > 0; }

Status check_ndim(const char* fn, const char* arg, const TensorView& t, int ndim) {
  if (t.ndim != ndim)
    return Status::Invalid(std::string(fn) + ": " + arg + " must be " + str(ndim) + "-D, got shape " +
                           t.shape_string());
  return Status::Ok();
}

Status check_vector(const char* fn, const char* arg, const TensorView& t, DType dt, int64_t len) {
  VP_RETURN_IF_ERROR(check_ndim(fn, arg, t, 1));
  if (t.dtype != dt)
    return Status::Invalid(std::string(fn) + ": " + arg + " must be " + dtype_name(dt) + ", got " +
                           dtype_name(t.dtype));
  if (len >= 0 && t.shape[0] != len)
    return Status::OutOfRange(std::string(fn) + ": " + arg + " must have length " + str(len) +
                              ", got " + str(t.shape[0]));
  return Status::Ok();
}

Status check_device(const char* fn, const char* arg, const TensorView& t, Device dev,
                    const char* like) {
  if (t.device != dev)
    return Status::Invalid(std::string(fn) + ": " + arg + " must be on " + device_name(dev) + " like " +
                           like + ", got a tensor on " + device_name(t.device));
  return Status::Ok();
}

Status check_float_dtype(const char* fn, const char* arg, const TensorView& t) {
  if (t.device == Device::kCPU) {
    if (t.dtype != DType::kFloat32)
      return Status::Invalid(std::string(fn) + ": " + arg + " must be float32 on cpu, got " +
                             dtype_name(t.dtype));
  } else if (t.dtype == DType::kInt32) {
    return Status::Invalid(std::string(fn) + ": " + arg +
                           " must be float32, bfloat16 or float16 on cuda, got int32");
  }
  return Status::Ok();
}

Status check_temperature(const char* fn, float t) {
  if (!std::isfinite(t) || !(t > 0.0f))
    return Status::OutOfRange(std::string(fn) + ": temperature must be a finite number > 0, got " + num(t));
  return Status::Ok();
}

// On CPU: every target in [0, v).
Status check_targets(const char* fn, const TensorView& targets, int64_t v) {
  if (targets.device != Device::kCPU) return Status::Ok();
  const int32_t* t = targets.as<int32_t>();
  for (int64_t i = 0; i < targets.shape[0]; ++i)
    if (t[i] < 0 || t[i] >= v)
      return Status::OutOfRange(std::string(fn) + ": targets[" + str(i) + "] must be in [0, " + str(v) +
                                ") (the vocabulary size), got " + str(t[i]));
  return Status::Ok();
}

// On CPU: every value finite.
Status check_finite(const char* fn, const char* arg, const TensorView& t) {
  if (t.device != Device::kCPU || !t.data) return Status::Ok();
  const float* x = t.as<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(x[i]))
      return Status::OutOfRange(std::string(fn) + ": " + arg + "[" + str(i) + "] must be finite, got " + num(x[i]));
  return Status::Ok();
}

// cu_seqlens starts at 0, never decreases and ends at total. A CUDA tensor's
// B + 1 offsets are copied to the host first (the kernels index with them).
// *host: the offsets in host memory (the tensor itself, or `storage`).
Status check_cu_seqlens(const char* fn, const TensorView& cu, int64_t total, std::vector<int32_t>* storage,
                        const int32_t** host) {
  VP_RETURN_IF_ERROR(check_vector(fn, "cuSeqlens", cu, DType::kInt32, -1));
  if (cu.shape[0] < 1)
    return Status::OutOfRange(std::string(fn) + ": cuSeqlens must hold B + 1 >= 1 offsets, got length 0");
  const int32_t* c = cu.as<int32_t>();
  if (cu.device != Device::kCPU) {
    storage->resize(static_cast<size_t>(cu.shape[0]));
    VP_RETURN_IF_ERROR(cuda::copy_to_host(storage->data(), cu.data, storage->size() * sizeof(int32_t)));
    c = storage->data();
  }
  *host = c;
  if (c[0] != 0) return Status::OutOfRange(std::string(fn) + ": cuSeqlens[0] must be 0, got " + str(c[0]));
  for (int64_t i = 1; i < cu.shape[0]; ++i)
    if (c[i] < c[i - 1])
      return Status::OutOfRange(std::string(fn) + ": cuSeqlens[" + str(i) + "] must be >= cuSeqlens[" +
                                str(i - 1) + "] (" + str(c[i - 1]) + "), got " + str(c[i]));
  if (c[cu.shape[0] - 1] != total)
    return Status::OutOfRange(std::string(fn) + ": cuSeqlens[" + str(cu.shape[0] - 1) +
                              "] must equal the token count " + str(total) + ", got " +
                              str(c[cu.shape[0] - 1]));
  return Status::Ok();
}

// The [N, V] logits / [N] targets / [N] vector family.
Status check_logits_call(const char* fn, const TensorView& logits, const TensorView& targets,
                         const TensorView& vec, const char* vec_name, float temperature) {
  VP_RETURN_IF_ERROR(check_ndim(fn, "logits", logits, 2));
  VP_RETURN_IF_ERROR(check_float_dtype(fn, "logits", logits));
  const int64_t n = logits.shape[0], v = logits.shape[1];
  if (v < 1 && n > 0)
    return Status::OutOfRange(std::string(fn) + ": logits must have a vocabulary of at least 1 column, got shape " +
                              logits.shape_string());
  VP_RETURN_IF_ERROR(check_vector(fn, "targets", targets, DType::kInt32, n));
  VP_RETURN_IF_ERROR(check_vector(fn, vec_name, vec, DType::kFloat32, n));
  VP_RETURN_IF_ERROR(check_device(fn, "targets", targets, logits.device, "logits"));
  VP_RETURN_IF_ERROR(check_device(fn, vec_name, vec, logits.device, "logits"));
  VP_RETURN_IF_ERROR(check_temperature(fn, temperature));
  return check_targets(fn, targets, v);
}

// hidden [N, d], weight [V, d], targets [N].
Status check_linear_call(const char* fn, const TensorView& hidden, const TensorView& weight,
                         const TensorView& targets) {
  VP_RETURN_IF_ERROR(check_ndim(fn, "hidden", hidden, 2));
  VP_RETURN_IF_ERROR(check_ndim(fn, "weight", weight, 2));
  VP_RETURN_IF_ERROR(check_float_dtype(fn, "hidden", hidden));
  VP_RETURN_IF_ERROR(check_device(fn, "weight", weight, hidden.device, "hidden"));
  if (weight.dtype != hidden.dtype)
    return Status::Invalid(std::string(fn) + ": weight must be " + dtype_name(hidden.dtype) +
                           " like hidden, got " + dtype_name(weight.dtype));
  if (weight.shape[1] != hidden.shape[1])
    return Status::OutOfRange(std::string(fn) + ": weight must be [V, " + str(hidden.shape[1]) +
                              "] to match hidden [N, d], got " + weight.shape_string());
  if (weight.shape[0] < 1)
    return Status::OutOfRange(std::string(fn) + ": weight must have at least one row (the vocabulary), got " +
                              weight.shape_string());
  VP_RETURN_IF_ERROR(check_vector(fn, "targets", targets, DType::kInt32, hidden.shape[0]));
  VP_RETURN_IF_ERROR(check_device(fn, "targets", targets, hidden.device, "hidden"));
  return check_targets(fn, targets, weight.shape[0]);
}

Status check_same(const char* fn, const char* arg, const TensorView& t, const TensorView& like,
                  const char* like_name) {
  VP_RETURN_IF_ERROR(check_device(fn, arg, t, like.device, like_name));
  if (t.dtype != like.dtype)
    return Status::Invalid(std::string(fn) + ": " + arg + " must be " + dtype_name(like.dtype) + " like " +
                           like_name + ", got " + dtype_name(t.dtype));
  if (t.ndim != like.ndim || t.numel() != like.numel() || t.shape_string() != like.shape_string())
    return Status::OutOfRange(std::string(fn) + ": " + arg + " must have shape " + like.shape_string() +
                              " like " + like_name + ", got " + t.shape_string());
  return Status::Ok();
}

Status check_grpo_options(const char* fn, const GrpoOptions& o) {
  if (!std::isfinite(o.eps_low) || o.eps_low < 0.0 || o.eps_low > 1.0)
    return Status::OutOfRange(std::string(fn) + ": epsLow must be in [0, 1], got " + num(o.eps_low));
  if (!std::isfinite(o.eps_high) || o.eps_high < 0.0)
    return Status::OutOfRange(std::string(fn) + ": epsHigh must be a finite number >= 0, got " + num(o.eps_high));
  if (!std::isfinite(o.beta) || o.beta < 0.0)
    return Status::OutOfRange(std::string(fn) + ": beta must be a finite number >= 0, got " + num(o.beta));
  if (o.loss_type == GrpoLossType::kDrGrpo && o.max_completion_length < 1)
    return Status::Invalid(std::string(fn) +
                           ": lossType 'dr_grpo' needs maxCompletionLength (an integer >= 1), got " +
                           (o.max_completion_length == 0 ? std::string("none") : str(o.max_completion_length)));
  return check_temperature(fn, o.temperature);
}

// The per-token GRPO vectors against T tokens and cuSeqlens; returns whether
// advantages are per sequence.
Status check_grpo_tokens(const char* fn, const TensorView& old, const TensorView& ref,
                         const TensorView& adv, const TensorView& cu, int64_t total, Device dev,
                         const char* like, const GrpoOptions& o, bool* per_sequence) {
  VP_RETURN_IF_ERROR(check_vector(fn, "oldLogprobs", old, DType::kFloat32, total));
  VP_RETURN_IF_ERROR(check_device(fn, "oldLogprobs", old, dev, like));
  if (present(ref)) {
    VP_RETURN_IF_ERROR(check_vector(fn, "refLogprobs", ref, DType::kFloat32, total));
    VP_RETURN_IF_ERROR(check_device(fn, "refLogprobs", ref, dev, like));
  } else if (o.beta > 0.0) {
    return Status::Invalid(std::string(fn) + ": beta > 0 (" + num(o.beta) +
                           ") needs refLogprobs for the KL penalty, got none");
  }
  VP_RETURN_IF_ERROR(check_device(fn, "cuSeqlens", cu, dev, like));
  std::vector<int32_t> cu_storage;
  const int32_t* c = nullptr;
  VP_RETURN_IF_ERROR(check_cu_seqlens(fn, cu, total, &cu_storage, &c));
  const int64_t b = cu.shape[0] - 1;
  VP_RETURN_IF_ERROR(check_vector(fn, "advantages", adv, DType::kFloat32, -1));
  VP_RETURN_IF_ERROR(check_device(fn, "advantages", adv, dev, like));
  if (adv.shape[0] == total) {
    *per_sequence = false;
  } else if (adv.shape[0] == b) {
    *per_sequence = true;
  } else {
    return Status::OutOfRange(std::string(fn) + ": advantages must have one value per token (" + str(total) +
                              ") or per sequence (" + str(b) + "), got length " + str(adv.shape[0]));
  }
  VP_RETURN_IF_ERROR(check_finite(fn, "oldLogprobs", old));
  VP_RETURN_IF_ERROR(check_finite(fn, "refLogprobs", ref));
  VP_RETURN_IF_ERROR(check_finite(fn, "advantages", adv));
  if (o.loss_type == GrpoLossType::kDrGrpo) {
    for (int64_t i = 0; i < b; ++i)
      if (c[i + 1] - c[i] > o.max_completion_length)
        return Status::OutOfRange(std::string(fn) + ": sequence " + str(i) + " has " + str(c[i + 1] - c[i]) +
                                  " tokens, more than maxCompletionLength (" + str(o.max_completion_length) + ")");
  }
  return Status::Ok();
}

cpu::GrpoTokens grpo_tokens(const TensorView& old, const TensorView& ref, const TensorView& adv,
                            const TensorView& cu, int64_t total, bool per_sequence) {
  cpu::GrpoTokens t;
  t.old_logprobs = old.as<float>();
  t.ref_logprobs = present(ref) ? ref.as<float>() : nullptr;
  t.advantages = adv.as<float>();
  t.advantages_per_sequence = per_sequence;
  t.cu_seqlens = cu.as<int32_t>();
  t.num_sequences = cu.shape[0] - 1;
  t.total_tokens = total;
  return t;
}

// The fused engine's problem for logits = hidden · weightᵀ / temperature (validated tensors).
cpu::LinearLogprobsProblem linear_problem(const char* fn, const TensorView& hidden, const TensorView& weight,
                                          const TensorView& targets, float temperature) {
  cpu::LinearLogprobsProblem p;
  p.hidden = hidden.as<float>();
  p.weight = weight.as<float>();
  p.targets = targets.as<int32_t>();
  p.n = hidden.shape[0];
  p.d = hidden.shape[1];
  p.v = weight.shape[0];
  p.inv_temperature = 1.0f / temperature;
  p.fn = fn;
  return p;
}

}  // namespace

// ---- token log-probs -------------------------------------------------------------------------

Status token_logprobs(const TensorView& logits, const TensorView& targets, const TensorView& out,
                      const LogprobsOptions& opts) {
  const char* fn = "tokenLogprobs";
  VP_RETURN_IF_ERROR(check_logits_call(fn, logits, targets, out, "out", opts.temperature));
  if (logits.device == Device::kCUDA) return cuda::token_logprobs(logits, targets, out, opts);
  if (logits.shape[0] == 0) return Status::Ok();
  return cpu::token_logprobs(logits.as<float>(), logits.shape[0], logits.shape[1], targets.as<int32_t>(),
                             1.0f / opts.temperature, out.as<float>());
}

Status token_logprobs_backward(const TensorView& dlogprobs, const TensorView& logits,
                               const TensorView& targets, const TensorView& dlogits,
                               const LogprobsOptions& opts) {
  const char* fn = "tokenLogprobsBackward";
  VP_RETURN_IF_ERROR(check_logits_call(fn, logits, targets, dlogprobs, "dLogprobs", opts.temperature));
  VP_RETURN_IF_ERROR(check_same(fn, "dLogits", dlogits, logits, "logits"));
  VP_RETURN_IF_ERROR(check_finite(fn, "dLogprobs", dlogprobs));
  if (logits.device == Device::kCUDA) return cuda::token_logprobs_backward(dlogprobs, logits, targets, dlogits, opts);
  if (logits.shape[0] == 0) return Status::Ok();
  return cpu::token_logprobs_backward(dlogprobs.as<float>(), logits.as<float>(), logits.shape[0],
                                      logits.shape[1], targets.as<int32_t>(), 1.0f / opts.temperature,
                                      dlogits.as<float>());
}

Status linear_token_logprobs(const TensorView& hidden, const TensorView& weight,
                             const TensorView& targets, const TensorView& out,
                             const LogprobsOptions& opts) {
  const char* fn = "linearTokenLogprobs";
  VP_RETURN_IF_ERROR(check_linear_call(fn, hidden, weight, targets));
  VP_RETURN_IF_ERROR(check_vector(fn, "out", out, DType::kFloat32, hidden.shape[0]));
  VP_RETURN_IF_ERROR(check_device(fn, "out", out, hidden.device, "hidden"));
  VP_RETURN_IF_ERROR(check_temperature(fn, opts.temperature));
  if (hidden.device == Device::kCUDA) return cuda::linear_token_logprobs(hidden, weight, targets, out, opts);
  cpu::LinearLogprobsProblem p = linear_problem(fn, hidden, weight, targets, opts.temperature);
  p.logprobs = out.as<float>();
  return cpu::linear_logprobs(p);
}

Status linear_token_logprobs_backward(const TensorView& dlogprobs, const TensorView& hidden,
                                      const TensorView& weight, const TensorView& targets,
                                      const TensorView& dhidden, const TensorView& dweight,
                                      const LogprobsOptions& opts, const TensorView& logprobs) {
  const char* fn = "linearTokenLogprobsBackward";
  VP_RETURN_IF_ERROR(check_linear_call(fn, hidden, weight, targets));
  VP_RETURN_IF_ERROR(check_vector(fn, "dLogprobs", dlogprobs, DType::kFloat32, hidden.shape[0]));
  VP_RETURN_IF_ERROR(check_device(fn, "dLogprobs", dlogprobs, hidden.device, "hidden"));
  VP_RETURN_IF_ERROR(check_same(fn, "dHidden", dhidden, hidden, "hidden"));
  VP_RETURN_IF_ERROR(check_same(fn, "dWeight", dweight, weight, "weight"));
  VP_RETURN_IF_ERROR(check_temperature(fn, opts.temperature));
  VP_RETURN_IF_ERROR(check_finite(fn, "dLogprobs", dlogprobs));
  if (logprobs.data) {
    VP_RETURN_IF_ERROR(check_vector(fn, "logprobs", logprobs, DType::kFloat32, hidden.shape[0]));
    VP_RETURN_IF_ERROR(check_device(fn, "logprobs", logprobs, hidden.device, "hidden"));
  }
  if (hidden.device == Device::kCUDA)
    return cuda::linear_token_logprobs_backward(dlogprobs, hidden, weight, targets, dhidden, dweight, opts,
                                                logprobs.as<float>());
  const float* dl = dlogprobs.as<float>();
  cpu::RowGradFn grad = [dl](int64_t r0, int64_t count, const float*, float* g) {
    for (int64_t i = 0; i < count; ++i) g[i] = dl[r0 + i];
    return Status::Ok();
  };
  cpu::LinearLogprobsProblem p = linear_problem(fn, hidden, weight, targets, opts.temperature);
  p.grad = &grad;
  p.dhidden = dhidden.as<float>();
  p.dweight = dweight.as<float>();
  p.logprobs = logprobs.as<float>();
  return cpu::linear_logprobs(p);
}

size_t linear_logprobs_workspace_bytes(int64_t n, int64_t d, int64_t v, int threads, bool backward) {
  return cpu::linear_logprobs_workspace(n, d, v, threads, backward);
}

// ---- rewards and advantages ---------------------------------------------------------------

Status comparative_rewards(const TensorView& complete, const TensorView& degraded,
                           int64_t group_size, const ComparativeOptions& opts,
                           const TensorView& out) {
  const char* fn = "comparativeRewards";
  VP_RETURN_IF_ERROR(check_vector(fn, "taskComplete", complete, DType::kFloat32, -1));
  VP_RETURN_IF_ERROR(check_vector(fn, "taskDegraded", degraded, DType::kFloat32, -1));
  VP_RETURN_IF_ERROR(check_device(fn, "taskDegraded", degraded, complete.device, "taskComplete"));
  const int64_t n = complete.shape[0];
  VP_RETURN_IF_ERROR(check_vector(fn, "out", out, DType::kFloat32, n));
  VP_RETURN_IF_ERROR(check_device(fn, "out", out, complete.device, "taskComplete"));
  if (group_size < 1) return Status::OutOfRange(std::string(fn) + ": groupSize must be an integer >= 1, got " + str(group_size));
  if (n % group_size != 0)
    return Status::OutOfRange(std::string(fn) + ": groupSize (" + str(group_size) +
                              ") must divide the number of complete-video rewards (" + str(n) + ")");
  const int64_t groups = n / group_size, nd = degraded.shape[0];
  if (groups == 0 && nd != 0)
    return Status::OutOfRange(std::string(fn) + ": taskDegraded must be empty when taskComplete is, got length " + str(nd));
  if (groups > 0 && (nd == 0 || nd % groups != 0))
    return Status::OutOfRange(std::string(fn) + ": taskDegraded must hold the same number (>= 1) of rewards for each of the " +
                              str(groups) + " groups, got length " + str(nd));
  for (double x : {opts.bonus, opts.ratio, opts.min_reward})
    if (!std::isfinite(x))
      return Status::OutOfRange(std::string(fn) + ": bonus, ratio and the minimum reward must be finite, got " + num(x));
  if (complete.device == Device::kCUDA) return cuda::comparative_rewards(complete, degraded, group_size, opts, out);
  for (auto [arg, t] : {std::pair<const char*, const TensorView*>{"taskComplete", &complete}, {"taskDegraded", &degraded}}) {
    const float* x = t->as<float>();
    for (int64_t i = 0; i < t->shape[0]; ++i)
      if (std::isinf(x[i]))
        return Status::OutOfRange(std::string(fn) + ": " + arg + "[" + str(i) + "] must be finite or NaN (left out), got " + num(x[i]));
  }
  return cpu::comparative_rewards(complete.as<float>(), n, degraded.as<float>(), nd, group_size, opts, out.as<float>());
}

Status group_advantages(const TensorView& rewards, int64_t group_size, AdvantageScale scale,
                        double eps, const TensorView& out) {
  const char* fn = "groupAdvantages";
  VP_RETURN_IF_ERROR(check_vector(fn, "rewards", rewards, DType::kFloat32, -1));
  const int64_t n = rewards.shape[0];
  VP_RETURN_IF_ERROR(check_vector(fn, "out", out, DType::kFloat32, n));
  VP_RETURN_IF_ERROR(check_device(fn, "out", out, rewards.device, "rewards"));
  if (group_size < 1) return Status::OutOfRange(std::string(fn) + ": groupSize must be an integer >= 1, got " + str(group_size));
  if (n % group_size != 0)
    return Status::OutOfRange(std::string(fn) + ": groupSize (" + str(group_size) +
                              ") must divide the number of rewards (" + str(n) + ")");
  if (!std::isfinite(eps) || eps < 0.0)
    return Status::OutOfRange(std::string(fn) + ": eps must be a finite number >= 0, got " + num(eps));
  if (scale != AdvantageScale::kGroup && scale != AdvantageScale::kBatch && scale != AdvantageScale::kNone)
    return Status::Invalid(std::string(fn) + ": unknown scale");
  if (rewards.device == Device::kCUDA) return cuda::group_advantages(rewards, group_size, scale, eps, out);
  const float* x = rewards.as<float>();
  for (int64_t i = 0; i < n; ++i)
    if (std::isinf(x[i]))
      return Status::OutOfRange(std::string(fn) + ": rewards[" + str(i) + "] must be finite or NaN (left out), got " + num(x[i]));
  return cpu::group_advantages(x, n, group_size, scale, eps, out.as<float>());
}

// ---- GRPO loss ----------------------------------------------------------------------------

Status grpo_loss(const GrpoInputs& in, const GrpoOptions& opts, const TensorView& dlogprobs,
                 GrpoStats* stats) {
  const char* fn = "grpoLoss";
  if (!stats) return Status::Invalid(std::string(fn) + ": stats is null");
  VP_RETURN_IF_ERROR(check_vector(fn, "logprobs", in.logprobs, DType::kFloat32, -1));
  const int64_t total = in.logprobs.shape[0];
  const Device dev = in.logprobs.device;
  VP_RETURN_IF_ERROR(check_grpo_options(fn, opts));
  bool per_seq = false;
  VP_RETURN_IF_ERROR(check_grpo_tokens(fn, in.old_logprobs, in.ref_logprobs, in.advantages, in.cu_seqlens,
                                       total, dev, "logprobs", opts, &per_seq));
  VP_RETURN_IF_ERROR(check_vector(fn, "dLogprobs", dlogprobs, DType::kFloat32, total));
  VP_RETURN_IF_ERROR(check_device(fn, "dLogprobs", dlogprobs, dev, "logprobs"));
  VP_RETURN_IF_ERROR(check_finite(fn, "logprobs", in.logprobs));
  if (dev == Device::kCUDA) return cuda::grpo_loss(in, opts, dlogprobs, stats);
  cpu::GrpoAccumulator acc(grpo_tokens(in.old_logprobs, in.ref_logprobs, in.advantages, in.cu_seqlens, total, per_seq), opts);
  acc.run(0, total, in.logprobs.as<float>(), dlogprobs.as<float>());
  *stats = acc.finish();
  return Status::Ok();
}

Status linear_grpo_loss(const LinearGrpoInputs& in, const GrpoOptions& opts,
                        const TensorView& dhidden, const TensorView& dweight,
                        const TensorView& logprobs_out, GrpoStats* stats) {
  const char* fn = "linearGrpoLoss";
  if (!stats) return Status::Invalid(std::string(fn) + ": stats is null");
  VP_RETURN_IF_ERROR(check_linear_call(fn, in.hidden, in.weight, in.targets));
  const int64_t total = in.hidden.shape[0];
  const Device dev = in.hidden.device;
  VP_RETURN_IF_ERROR(check_grpo_options(fn, opts));
  bool per_seq = false;
  VP_RETURN_IF_ERROR(check_grpo_tokens(fn, in.old_logprobs, in.ref_logprobs, in.advantages, in.cu_seqlens,
                                       total, dev, "hidden", opts, &per_seq));
  VP_RETURN_IF_ERROR(check_same(fn, "dHidden", dhidden, in.hidden, "hidden"));
  VP_RETURN_IF_ERROR(check_same(fn, "dWeight", dweight, in.weight, "weight"));
  if (present(logprobs_out)) {
    VP_RETURN_IF_ERROR(check_vector(fn, "logprobs", logprobs_out, DType::kFloat32, total));
    VP_RETURN_IF_ERROR(check_device(fn, "logprobs", logprobs_out, dev, "hidden"));
  }
  if (dev == Device::kCUDA) return cuda::linear_grpo_loss(in, opts, dhidden, dweight, logprobs_out, stats);
  cpu::GrpoAccumulator acc(grpo_tokens(in.old_logprobs, in.ref_logprobs, in.advantages, in.cu_seqlens, total, per_seq), opts);
  cpu::RowGradFn grad = [&acc](int64_t r0, int64_t count, const float* logp, float* g) {
    acc.run(r0, count, logp, g);
    return Status::Ok();
  };
  cpu::LinearLogprobsProblem p = linear_problem(fn, in.hidden, in.weight, in.targets, opts.temperature);
  p.logprobs = present(logprobs_out) ? logprobs_out.as<float>() : nullptr;
  p.grad = &grad;
  p.dhidden = dhidden.as<float>();
  p.dweight = dweight.as<float>();
  VP_RETURN_IF_ERROR(cpu::linear_logprobs(p));
  *stats = acc.finish();
  return Status::Ok();
}

}  // namespace vp
