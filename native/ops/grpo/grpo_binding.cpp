// Bindings of the token log-prob and GRPO kernels (vp/logprobs.h, vp/grpo.h).
//
// Matrices arrive as typed arrays (CPU) or CUDA handles with a shape and a
// dtype; per-row vectors (targets, log-probs, advantages, rewards, cuSeqlens)
// as typed arrays or CUDA handles. When the matrices are on CUDA and a vector
// is a host typed array, it is uploaded to a temporary device buffer leased
// from the kernels' scratch pool (no cudaMalloc/cudaFree in the steady state;
// an output vector is downloaded into its typed array afterwards), so the
// TypeScript layer can hand plain Float32Array/Int32Array in either case.
// The TypeScript layer validates everything first; the core validates again,
// and the views here are checked against the buffers' sizes.
#include <memory>
#include <vector>

#include "addon/addon.h"
#include "vp/cuda.h"
#include "vp/grpo.h"
#include "vp/logprobs.h"

namespace vpaddon {
namespace {

// Device buffers that live for one call, leased from the scratch pool (vp/cuda.h).
class Temps {
 public:
  Temps() = default;
  Temps(const Temps&) = delete;
  Temps& operator=(const Temps&) = delete;
  ~Temps() {
    for (size_t s : slots_) vp::cuda::scratch_release(s);
  }
  void* alloc(Napi::Env env, size_t bytes) {
    void* p = nullptr;
    size_t slot = 0;
    ThrowIfError(env, vp::cuda::scratch_lease(bytes == 0 ? 4 : bytes, &p, &slot));
    slots_.push_back(slot);
    return p;
  }

 private:
  std::vector<size_t> slots_;
};

struct Download {
  void* host;
  const void* device;
  size_t bytes;
};

bool IsAbsent(const Napi::Value& v) { return v.IsUndefined() || v.IsNull(); }

// A vector argument of `len` elements of `dt` on `dev`. Host arrays go up to
// the device when dev is CUDA; `out` vectors come back down after the call.
vp::TensorView Vec(const Napi::Value& v, int64_t len, vp::DType dt, vp::Device dev, const char* name,
                   Temps& temps, std::vector<Download>* out = nullptr) {
  Napi::Env env = v.Env();
  std::vector<int64_t> shape{len};
  if (v.IsExternal()) {
    if (dev != vp::Device::kCUDA)
      throw Napi::TypeError::New(env, std::string(name) + ": a CUDA tensor where the op runs on cpu");
    return CudaView(v, shape, dt, name);
  }
  vp::TensorView host = CpuView(v, shape, name);
  if (host.dtype != dt)
    throw Napi::TypeError::New(env, std::string(name) + ": expected " + vp::dtype_name(dt) + " data");
  if (dev == vp::Device::kCPU) return host;
  vp::TensorView d = host;
  d.device = vp::Device::kCUDA;
  d.data = temps.alloc(env, host.nbytes());
  if (out) out->push_back({host.data, d.data, host.nbytes()});
  else ThrowIfError(env, vp::cuda::copy_to_device(d.data, host.data, host.nbytes()));
  return d;
}

void FinishDownloads(Napi::Env env, const std::vector<Download>& downs) {
  for (const Download& d : downs) ThrowIfError(env, vp::cuda::copy_to_host(d.host, d.device, d.bytes));
}

// A matrix argument: typed array (CPU) or CUDA handle.
vp::TensorView Mat(const Napi::Value& v, const Napi::Value& shape, const Napi::Value& dtype,
                   const char* name) {
  auto s = ShapeArg(shape, name);
  if (v.IsExternal()) return CudaView(v, s, DTypeArg(dtype, "dtype"), name);
  return CpuView(v, s, name);
}

Napi::Object StatsObject(Napi::Env env, const vp::GrpoStats& st) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", st.loss);
  o.Set("clipFraction", st.clip_fraction);
  o.Set("kl", st.kl);
  return o;
}

vp::GrpoOptions GrpoOpts(const Napi::Object& o) {
  vp::GrpoOptions g;
  g.eps_low = o.Get("epsLow").As<Napi::Number>().DoubleValue();
  g.eps_high = o.Get("epsHigh").As<Napi::Number>().DoubleValue();
  g.beta = o.Get("beta").As<Napi::Number>().DoubleValue();
  std::string lt = o.Get("lossType").As<Napi::String>().Utf8Value();
  g.loss_type = lt == "grpo" ? vp::GrpoLossType::kGrpo
                : lt == "bnpo" ? vp::GrpoLossType::kBnpo
                : lt == "dr_grpo" ? vp::GrpoLossType::kDrGrpo
                                  : vp::GrpoLossType::kDapo;
  Napi::Value m = o.Get("maxCompletionLength");
  g.max_completion_length = IsAbsent(m) ? 0 : m.As<Napi::Number>().Int64Value();
  Napi::Value t = o.Get("temperature");
  g.temperature = IsAbsent(t) ? 1.0f : t.As<Napi::Number>().FloatValue();
  return g;
}

// tokenLogprobs(logits, shape, dtype, targets, out, temperature)
Napi::Value TokenLogprobs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  vp::TensorView logits = Mat(info[0], info[1], info[2], "logits");
  const int64_t n = logits.shape[0];
  Temps temps;
  std::vector<Download> downs;
  vp::TensorView targets = Vec(info[3], n, vp::DType::kInt32, logits.device, "targets", temps);
  vp::TensorView out = Vec(info[4], n, vp::DType::kFloat32, logits.device, "out", temps, &downs);
  vp::LogprobsOptions o;
  o.temperature = info[5].As<Napi::Number>().FloatValue();
  ThrowIfError(env, vp::token_logprobs(logits, targets, out, o));
  FinishDownloads(env, downs);
  return env.Undefined();
}

// tokenLogprobsBackward({ dLogprobs, logits, shape, dtype, targets, dLogits, temperature })
Napi::Value TokenLogprobsBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "tokenLogprobsBackward");
  vp::TensorView logits = Mat(a.Get("logits"), a.Get("shape"), a.Get("dtype"), "logits");
  vp::TensorView dlogits = Mat(a.Get("dLogits"), a.Get("shape"), a.Get("dtype"), "dLogits");
  const int64_t n = logits.shape[0];
  Temps temps;
  vp::TensorView dl = Vec(a.Get("dLogprobs"), n, vp::DType::kFloat32, logits.device, "dLogprobs", temps);
  vp::TensorView targets = Vec(a.Get("targets"), n, vp::DType::kInt32, logits.device, "targets", temps);
  vp::LogprobsOptions o;
  o.temperature = a.Get("temperature").As<Napi::Number>().FloatValue();
  ThrowIfError(env, vp::token_logprobs_backward(dl, logits, targets, dlogits, o));
  return env.Undefined();
}

// linearTokenLogprobs({ hidden, hiddenShape, weight, weightShape, dtype, targets, out, temperature })
Napi::Value LinearTokenLogprobs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "linearTokenLogprobs");
  vp::TensorView hidden = Mat(a.Get("hidden"), a.Get("hiddenShape"), a.Get("dtype"), "hidden");
  vp::TensorView weight = Mat(a.Get("weight"), a.Get("weightShape"), a.Get("dtype"), "weight");
  const int64_t n = hidden.shape[0];
  Temps temps;
  std::vector<Download> downs;
  vp::TensorView targets = Vec(a.Get("targets"), n, vp::DType::kInt32, hidden.device, "targets", temps);
  vp::TensorView out = Vec(a.Get("out"), n, vp::DType::kFloat32, hidden.device, "out", temps, &downs);
  vp::LogprobsOptions o;
  o.temperature = a.Get("temperature").As<Napi::Number>().FloatValue();
  ThrowIfError(env, vp::linear_token_logprobs(hidden, weight, targets, out, o));
  FinishDownloads(env, downs);
  return env.Undefined();
}

// linearTokenLogprobsBackward({ dLogprobs, hidden, hiddenShape, weight, weightShape, dtype, targets,
//                               dHidden, dWeight, temperature, logprobs? })   logprobs: float32 [N] out
Napi::Value LinearTokenLogprobsBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "linearTokenLogprobsBackward");
  const Napi::Value hs = a.Get("hiddenShape"), ws = a.Get("weightShape"), dt = a.Get("dtype");
  vp::TensorView hidden = Mat(a.Get("hidden"), hs, dt, "hidden");
  vp::TensorView weight = Mat(a.Get("weight"), ws, dt, "weight");
  vp::TensorView dhidden = Mat(a.Get("dHidden"), hs, dt, "dHidden");
  vp::TensorView dweight = Mat(a.Get("dWeight"), ws, dt, "dWeight");
  const int64_t n = hidden.shape[0];
  Temps temps;
  vp::TensorView dl = Vec(a.Get("dLogprobs"), n, vp::DType::kFloat32, hidden.device, "dLogprobs", temps);
  vp::TensorView targets = Vec(a.Get("targets"), n, vp::DType::kInt32, hidden.device, "targets", temps);
  std::vector<Download> downs;
  vp::TensorView logprobs;
  if (a.Has("logprobs") && !a.Get("logprobs").IsUndefined())
    logprobs = Vec(a.Get("logprobs"), n, vp::DType::kFloat32, hidden.device, "logprobs", temps, &downs);
  vp::LogprobsOptions o;
  o.temperature = a.Get("temperature").As<Napi::Number>().FloatValue();
  ThrowIfError(env, vp::linear_token_logprobs_backward(dl, hidden, weight, targets, dhidden, dweight, o, logprobs));
  FinishDownloads(env, downs);
  return env.Undefined();
}

vp::Device DeviceOf(const Napi::Value& v) {
  return v.IsExternal() ? vp::Device::kCUDA : vp::Device::kCPU;
}

int64_t LengthOf(const Napi::Value& v, const Napi::Value& len_hint) {
  if (v.IsTypedArray()) return static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength());
  return len_hint.As<Napi::Number>().Int64Value();
}

// groupAdvantages(rewards, n, groupSize, scale, eps, out)
Napi::Value GroupAdvantages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const vp::Device dev = DeviceOf(info[0]);
  const int64_t n = LengthOf(info[0], info[1]);
  Temps temps;
  vp::TensorView r = Vec(info[0], n, vp::DType::kFloat32, dev, "rewards", temps);
  vp::TensorView out = Vec(info[5], n, vp::DType::kFloat32, dev, "out", temps);
  std::string sc = info[3].As<Napi::String>().Utf8Value();
  vp::AdvantageScale scale = sc == "batch" ? vp::AdvantageScale::kBatch
                             : sc == "none" ? vp::AdvantageScale::kNone
                                            : vp::AdvantageScale::kGroup;
  ThrowIfError(env, vp::group_advantages(r, info[2].As<Napi::Number>().Int64Value(), scale,
                                         info[4].As<Napi::Number>().DoubleValue(), out));
  return env.Undefined();
}

// comparativeRewards({ complete, nComplete, degraded, nDegraded, groupSize, mode, bonus, ratio,
//                      minReward, out })
Napi::Value ComparativeRewards(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "comparativeRewards");
  const Napi::Value complete = a.Get("complete"), degraded = a.Get("degraded");
  const vp::Device dev = DeviceOf(complete);
  const int64_t nc = LengthOf(complete, a.Get("nComplete")), nd = LengthOf(degraded, a.Get("nDegraded"));
  Temps temps;
  vp::TensorView c = Vec(complete, nc, vp::DType::kFloat32, dev, "taskComplete", temps);
  vp::TensorView d = Vec(degraded, nd, vp::DType::kFloat32, dev, "taskDegraded", temps);
  vp::TensorView out = Vec(a.Get("out"), nc, vp::DType::kFloat32, dev, "out", temps);
  vp::ComparativeOptions o;
  o.mode = a.Get("mode").As<Napi::String>().Utf8Value() == "threshold" ? vp::ComparativeMode::kThreshold
                                                                       : vp::ComparativeMode::kPairwise;
  o.bonus = a.Get("bonus").As<Napi::Number>().DoubleValue();
  o.ratio = a.Get("ratio").As<Napi::Number>().DoubleValue();
  o.min_reward = a.Get("minReward").As<Napi::Number>().DoubleValue();
  ThrowIfError(env, vp::comparative_rewards(c, d, a.Get("groupSize").As<Napi::Number>().Int64Value(), o, out));
  return env.Undefined();
}

int64_t Int64Field(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().Int64Value(); }

// grpoLoss({ logprobs, oldLogprobs, refLogprobs|null, advantages, cuSeqlens, dLogprobs, tokens,
//            numAdvantages, numCuSeqlens }, opts) → stats
Napi::Value GrpoLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "grpoLoss");
  const Napi::Value logprobs = a.Get("logprobs"), ref = a.Get("refLogprobs");
  const vp::Device dev = DeviceOf(logprobs);
  const int64_t t = Int64Field(a, "tokens");
  Temps temps;
  vp::GrpoInputs in;
  in.logprobs = Vec(logprobs, t, vp::DType::kFloat32, dev, "logprobs", temps);
  in.old_logprobs = Vec(a.Get("oldLogprobs"), t, vp::DType::kFloat32, dev, "oldLogprobs", temps);
  if (!IsAbsent(ref)) in.ref_logprobs = Vec(ref, t, vp::DType::kFloat32, dev, "refLogprobs", temps);
  in.advantages = Vec(a.Get("advantages"), Int64Field(a, "numAdvantages"), vp::DType::kFloat32, dev, "advantages", temps);
  in.cu_seqlens = Vec(a.Get("cuSeqlens"), Int64Field(a, "numCuSeqlens"), vp::DType::kInt32, dev, "cuSeqlens", temps);
  vp::TensorView dl = Vec(a.Get("dLogprobs"), t, vp::DType::kFloat32, dev, "dLogprobs", temps);
  vp::GrpoStats st;
  ThrowIfError(env, vp::grpo_loss(in, GrpoOpts(ArgsObject(info, "grpoLoss", 1)), dl, &st));
  return StatsObject(env, st);
}

// linearGrpoLoss({ hidden, hiddenShape, weight, weightShape, dtype, targets, oldLogprobs,
//                  refLogprobs|null, advantages, cuSeqlens, dHidden, dWeight, logprobsOut|null,
//                  numAdvantages, numCuSeqlens }, opts) → stats
Napi::Value LinearGrpoLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "linearGrpoLoss");
  const Napi::Value hs = a.Get("hiddenShape"), ws = a.Get("weightShape"), dt = a.Get("dtype");
  const Napi::Value ref = a.Get("refLogprobs"), lp_out = a.Get("logprobsOut");
  vp::LinearGrpoInputs in;
  in.hidden = Mat(a.Get("hidden"), hs, dt, "hidden");
  in.weight = Mat(a.Get("weight"), ws, dt, "weight");
  const vp::Device dev = in.hidden.device;
  const int64_t t = in.hidden.shape[0];
  Temps temps;
  std::vector<Download> downs;
  in.targets = Vec(a.Get("targets"), t, vp::DType::kInt32, dev, "targets", temps);
  in.old_logprobs = Vec(a.Get("oldLogprobs"), t, vp::DType::kFloat32, dev, "oldLogprobs", temps);
  if (!IsAbsent(ref)) in.ref_logprobs = Vec(ref, t, vp::DType::kFloat32, dev, "refLogprobs", temps);
  in.advantages = Vec(a.Get("advantages"), Int64Field(a, "numAdvantages"), vp::DType::kFloat32, dev, "advantages", temps);
  in.cu_seqlens = Vec(a.Get("cuSeqlens"), Int64Field(a, "numCuSeqlens"), vp::DType::kInt32, dev, "cuSeqlens", temps);
  vp::TensorView dh = Mat(a.Get("dHidden"), hs, dt, "dHidden");
  vp::TensorView dw = Mat(a.Get("dWeight"), ws, dt, "dWeight");
  vp::TensorView lp;
  if (!IsAbsent(lp_out)) lp = Vec(lp_out, t, vp::DType::kFloat32, dev, "logprobs", temps, &downs);
  vp::GrpoStats st;
  ThrowIfError(env, vp::linear_grpo_loss(in, GrpoOpts(ArgsObject(info, "linearGrpoLoss", 1)), dh, dw, lp, &st));
  FinishDownloads(env, downs);
  return StatsObject(env, st);
}

Napi::Value WorkspaceBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(
      info.Env(), static_cast<double>(vp::linear_logprobs_workspace_bytes(
                      info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::Number>().Int64Value(),
                      info[2].As<Napi::Number>().Int64Value(), info[3].As<Napi::Number>().Int32Value(),
                      info[4].ToBoolean())));
}

}  // namespace

void InitGrpo(Napi::Env env, Napi::Object exports) {
  exports.Set("tokenLogprobs", Napi::Function::New(env, TokenLogprobs));
  exports.Set("tokenLogprobsBackward", Napi::Function::New(env, TokenLogprobsBackward));
  exports.Set("linearTokenLogprobs", Napi::Function::New(env, LinearTokenLogprobs));
  exports.Set("linearTokenLogprobsBackward", Napi::Function::New(env, LinearTokenLogprobsBackward));
  exports.Set("groupAdvantages", Napi::Function::New(env, GroupAdvantages));
  exports.Set("comparativeRewards", Napi::Function::New(env, ComparativeRewards));
  exports.Set("grpoLoss", Napi::Function::New(env, GrpoLoss));
  exports.Set("linearGrpoLoss", Napi::Function::New(env, LinearGrpoLoss));
  exports.Set("linearLogprobsWorkspaceBytes", Napi::Function::New(env, WorkspaceBytes));
}

}  // namespace vpaddon
