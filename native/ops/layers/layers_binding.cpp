// Bindings of the VideoLM layer, optimizer and RNG kernels (vp/layers.h,
// vp/optim.h, vp/rng.h) for lib/ops/layers.ts. CPU typed arrays only. The
// TypeScript side validates shapes first; here every array length that memory
// safety depends on is checked again against the sizes passed in.
#include <string>
#include <vector>

#include "addon/addon.h"
#include "vp/layers.h"
#include "vp/optim.h"
#include "vp/rng.h"
#include "vp/sample.h"

namespace vpaddon {
namespace {

int64_t Int(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw Napi::RangeError::New(v.Env(), std::string(name) + ": expected a non-negative integer");
  return static_cast<int64_t>(d);
}

double Num(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a number");
  return v.As<Napi::Number>().DoubleValue();
}

template <typename T, napi_typedarray_type kType>
T* Arr(const Napi::Value& v, int64_t len, const char* name, bool nullable = false) {
  Napi::Env env = v.Env();
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kType)
    throw Napi::TypeError::New(env, std::string(name) + (kType == napi_float32_array ? ": expected a Float32Array" : ": expected an Int32Array"));
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != len)
    throw Napi::RangeError::New(env, std::string(name) + ": holds " + std::to_string(ta.ElementLength()) +
                                         " elements, expected " + std::to_string(len));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

float* F32(const Napi::Value& v, int64_t len, const char* name, bool nullable = false) {
  return Arr<float, napi_float32_array>(v, len, name, nullable);
}
int32_t* I32(const Napi::Value& v, int64_t len, const char* name) {
  return Arr<int32_t, napi_int32_array>(v, len, name);
}

// rmsnormForward({ x, gain, rows, dim, eps, y, rstd })
Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "rmsnormForward");
  int64_t rows = Int(a.Get("rows"), "rows"), dim = Int(a.Get("dim"), "dim");
  ThrowIfError(info.Env(), vp::rmsnorm_forward(F32(a.Get("x"), rows * dim, "x"), F32(a.Get("gain"), dim, "gain"), rows,
                                               dim, static_cast<float>(Num(a.Get("eps"), "eps")),
                                               F32(a.Get("y"), rows * dim, "y"), F32(a.Get("rstd"), rows, "rstd")));
  return info.Env().Undefined();
}

// rmsnormBackward({ dy, x, gain, rstd|null, rows, dim, eps, dx, dGain, accumulate })
Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "rmsnormBackward");
  int64_t rows = Int(a.Get("rows"), "rows"), dim = Int(a.Get("dim"), "dim");
  ThrowIfError(info.Env(), vp::rmsnorm_backward(F32(a.Get("dy"), rows * dim, "dy"), F32(a.Get("x"), rows * dim, "x"),
                                                F32(a.Get("gain"), dim, "gain"), F32(a.Get("rstd"), rows, "rstd", true),
                                                rows, dim, static_cast<float>(Num(a.Get("eps"), "eps")),
                                                F32(a.Get("dx"), rows * dim, "dx"), F32(a.Get("dGain"), dim, "dgain"),
                                                a.Get("accumulate").ToBoolean()));
  return info.Env().Undefined();
}

// swigluForward(gate, up, rows, ffn, h)
Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  int64_t rows = Int(info[2], "rows"), f = Int(info[3], "ffn");
  ThrowIfError(info.Env(), vp::swiglu_forward(F32(info[0], rows * f, "gate"), F32(info[1], rows * f, "up"), rows, f, f,
                                              F32(info[4], rows * f, "h")));
  return info.Env().Undefined();
}

// swigluBackward({ dh, gate, up, rows, ffn, dGate, dUp })
Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "swigluBackward");
  int64_t rows = Int(a.Get("rows"), "rows"), f = Int(a.Get("ffn"), "ffn");
  ThrowIfError(info.Env(), vp::swiglu_backward(F32(a.Get("dh"), rows * f, "dh"), F32(a.Get("gate"), rows * f, "gate"),
                                               F32(a.Get("up"), rows * f, "up"), rows, f, f,
                                               F32(a.Get("dGate"), rows * f, "dgate"), F32(a.Get("dUp"), rows * f, "dup")));
  return info.Env().Undefined();
}

// ropeApply({ x, positions, tokens, heads, headDim, theta, inverse, out })
Napi::Value RopeApply(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "ropeApply");
  int64_t t = Int(a.Get("tokens"), "tokens"), h = Int(a.Get("heads"), "heads"), d = Int(a.Get("headDim"), "headDim");
  ThrowIfError(info.Env(), vp::rope_apply(F32(a.Get("x"), t * h * d, "x"), I32(a.Get("positions"), t, "positions"), t, h,
                                          d, static_cast<float>(Num(a.Get("theta"), "theta")),
                                          a.Get("inverse").ToBoolean(), F32(a.Get("out"), t * h * d, "out")));
  return info.Env().Undefined();
}

// embeddingForward(table, vocab, dim, ids, out)
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  int64_t v = Int(info[1], "vocab"), d = Int(info[2], "dim");
  int32_t* ids = nullptr;
  int64_t n = 0;
  if (info[3].IsTypedArray()) n = static_cast<int64_t>(info[3].As<Napi::TypedArray>().ElementLength());
  ids = I32(info[3], n, "ids");
  ThrowIfError(info.Env(), vp::embedding_forward(F32(info[0], v * d, "table"), v, d, ids, n, F32(info[4], n * d, "out")));
  return info.Env().Undefined();
}

// embeddingBackward(dout, ids, vocab, dim, dtable, accumulate)
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  int64_t v = Int(info[2], "vocab"), d = Int(info[3], "dim");
  int64_t n = info[1].IsTypedArray() ? static_cast<int64_t>(info[1].As<Napi::TypedArray>().ElementLength()) : 0;
  ThrowIfError(info.Env(), vp::embedding_backward(F32(info[0], n * d, "dout"), I32(info[1], n, "ids"), n, v, d,
                                                  F32(info[4], v * d, "dtable"), info[5].ToBoolean()));
  return info.Env().Undefined();
}

// linearForward({ x, weight, bias|null, n, inFeatures, outFeatures, y })
Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "linearForward");
  int64_t n = Int(a.Get("n"), "n"), in = Int(a.Get("inFeatures"), "inFeatures"), out = Int(a.Get("outFeatures"), "outFeatures");
  ThrowIfError(info.Env(), vp::linear_forward(F32(a.Get("x"), n * in, "x"), F32(a.Get("weight"), out * in, "weight"),
                                              F32(a.Get("bias"), out, "bias", true), n, in, out,
                                              F32(a.Get("y"), n * out, "y")));
  return info.Env().Undefined();
}

// linearBackward({ dy, x, weight, n, inFeatures, outFeatures, dx|null, dWeight|null, dBias|null, accumulate })
Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "linearBackward");
  int64_t n = Int(a.Get("n"), "n"), in = Int(a.Get("inFeatures"), "inFeatures"), out = Int(a.Get("outFeatures"), "outFeatures");
  ThrowIfError(info.Env(), vp::linear_backward(F32(a.Get("dy"), n * out, "dy"), F32(a.Get("x"), n * in, "x"),
                                               F32(a.Get("weight"), out * in, "weight"), n, in, out,
                                               F32(a.Get("dx"), n * in, "dx", true),
                                               F32(a.Get("dWeight"), out * in, "dWeight", true),
                                               F32(a.Get("dBias"), out, "dBias", true), a.Get("accumulate").ToBoolean()));
  return info.Env().Undefined();
}

// crossEntropyForward(logits, targets, n, vocab, lse) → [loss, count]
Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = Int(info[2], "n"), v = Int(info[3], "vocab");
  float loss = 0;
  int64_t count = 0;
  ThrowIfError(env, vp::cross_entropy_forward(F32(info[0], n * v, "logits"), I32(info[1], n, "targets"), n, v, &loss,
                                              F32(info[4], n, "lse"), &count));
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set(0u, Napi::Number::New(env, loss));
  r.Set(1u, Napi::Number::New(env, static_cast<double>(count)));
  return r;
}

// crossEntropyBackward({ logits, targets, lse|null, n, vocab, gradLoss, dLogits })
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "crossEntropyBackward");
  int64_t n = Int(a.Get("n"), "n"), v = Int(a.Get("vocab"), "vocab");
  ThrowIfError(info.Env(), vp::cross_entropy_backward(F32(a.Get("logits"), n * v, "logits"), I32(a.Get("targets"), n, "targets"),
                                                      F32(a.Get("lse"), n, "lse", true), n, v,
                                                      static_cast<float>(Num(a.Get("gradLoss"), "gradLoss")),
                                                      F32(a.Get("dLogits"), n * v, "dLogits")));
  return info.Env().Undefined();
}

// adamwStep({ param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step, gradScale })
Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "adamwStep");
  const Napi::Value param = a.Get("param");
  int64_t n = param.IsTypedArray() ? static_cast<int64_t>(param.As<Napi::TypedArray>().ElementLength()) : 0;
  vp::AdamWConfig c;
  c.lr = static_cast<float>(Num(a.Get("lr"), "lr"));
  c.beta1 = static_cast<float>(Num(a.Get("beta1"), "beta1"));
  c.beta2 = static_cast<float>(Num(a.Get("beta2"), "beta2"));
  c.eps = static_cast<float>(Num(a.Get("eps"), "eps"));
  c.weight_decay = static_cast<float>(Num(a.Get("weightDecay"), "weightDecay"));
  c.step = Int(a.Get("step"), "step");
  c.grad_scale = static_cast<float>(Num(a.Get("gradScale"), "gradScale"));
  ThrowIfError(info.Env(), vp::adamw_step(F32(param, n, "param"), F32(a.Get("grad"), n, "grad"), F32(a.Get("m"), n, "m"),
                                          F32(a.Get("v"), n, "v"), n, c));
  return info.Env().Undefined();
}

// axpyF32({ y, x, alpha }): y += alpha·x in place (vp::axpy); x and y of the same length.
Napi::Value AxpyF32(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "axpyF32");
  const Napi::Value y = a.Get("y");
  const int64_t n = y.IsTypedArray() ? static_cast<int64_t>(y.As<Napi::TypedArray>().ElementLength()) : 0;
  ThrowIfError(info.Env(), vp::axpy(F32(y, n, "y"), F32(a.Get("x"), n, "x"), Num(a.Get("alpha"), "alpha"), n));
  return info.Env().Undefined();
}

// clipGradNorm(grads: Float32Array[], maxNorm) → norm before clipping
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "grads: expected an array of Float32Arrays");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<float*> ptrs;
  std::vector<int64_t> sizes;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    int64_t n = v.IsTypedArray() ? static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength()) : 0;
    ptrs.push_back(F32(v, n, "grads[i]"));
    sizes.push_back(n);
  }
  double norm = 0;
  ThrowIfError(env, vp::clip_grad_norm(ptrs.data(), sizes.data(), static_cast<int>(ptrs.size()), Num(info[1], "maxNorm"), &norm));
  return Napi::Number::New(env, norm);
}

// lrAt(baseLr, minLr, warmup, total, step)
Napi::Value LrAt(const Napi::CallbackInfo& info) {
  vp::LrSchedule s;
  s.base_lr = Num(info[0], "baseLr");
  s.min_lr = Num(info[1], "minLr");
  s.warmup_steps = Int(info[2], "warmupSteps");
  s.total_steps = Int(info[3], "totalSteps");
  return Napi::Number::New(info.Env(), vp::lr_at(s, Int(info[4], "step")));
}

uint64_t U64(const Napi::Value& v, const char* name) {
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(v.Env(), std::string(name) + ": must fit in 64 unsigned bits");
    return x;
  }
  return static_cast<uint64_t>(Int(v, name));
}

// rngFill(kind 'normal'|'uniform', seed, stream, a, b, out)
Napi::Value RngFill(const Napi::CallbackInfo& info) {
  std::string kind = info[0].ToString();
  uint64_t seed = U64(info[1], "seed"), stream = U64(info[2], "stream");
  float a = static_cast<float>(Num(info[3], "a")), b = static_cast<float>(Num(info[4], "b"));
  int64_t n = info[5].IsTypedArray() ? static_cast<int64_t>(info[5].As<Napi::TypedArray>().ElementLength()) : 0;
  float* out = F32(info[5], n, "out");
  ThrowIfError(info.Env(), kind == "normal" ? vp::rng_normal(seed, stream, a, b, out, n)
                                            : vp::rng_uniform(seed, stream, a, b, out, n));
  return info.Env().Undefined();
}

// sampleTokens({ logits, rows, vocab, temperature, topP, seed: bigint, step: bigint,
//                streams: BigUint64Array|null, out: Int32Array })
Napi::Value SampleTokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "sampleTokens");
  int64_t rows = Int(a.Get("rows"), "rows"), v = Int(a.Get("vocab"), "vocab");
  vp::SampleOptions o;
  o.temperature = static_cast<float>(Num(a.Get("temperature"), "temperature"));
  o.top_p = static_cast<float>(Num(a.Get("topP"), "topP"));
  o.seed = U64(a.Get("seed"), "seed");
  o.step = U64(a.Get("step"), "step");
  const uint64_t* streams = nullptr;
  const Napi::Value sv = a.Get("streams");
  if (!sv.IsNull() && !sv.IsUndefined()) {
    if (!sv.IsTypedArray() || sv.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
      throw Napi::TypeError::New(env, "streams: expected a BigUint64Array");
    Napi::TypedArray ta = sv.As<Napi::TypedArray>();
    if (static_cast<int64_t>(ta.ElementLength()) != rows) throw Napi::RangeError::New(env, "streams: one per row");
    streams = reinterpret_cast<const uint64_t*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  }
  ThrowIfError(env, vp::sample_tokens(F32(a.Get("logits"), rows * v, "logits"), rows, v, o, streams,
                                      I32(a.Get("out"), rows, "out")));
  return env.Undefined();
}

}  // namespace

void InitLayers(Napi::Env env, Napi::Object exports) {
  exports.Set("sampleTokens", Napi::Function::New(env, SampleTokens));
  exports.Set("rmsnormForward", Napi::Function::New(env, RmsnormForward));
  exports.Set("rmsnormBackward", Napi::Function::New(env, RmsnormBackward));
  exports.Set("swigluForward", Napi::Function::New(env, SwigluForward));
  exports.Set("swigluBackward", Napi::Function::New(env, SwigluBackward));
  exports.Set("ropeApply", Napi::Function::New(env, RopeApply));
  exports.Set("embeddingForward", Napi::Function::New(env, EmbeddingForward));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward));
  exports.Set("linearForward", Napi::Function::New(env, LinearForward));
  exports.Set("linearBackward", Napi::Function::New(env, LinearBackward));
  exports.Set("crossEntropyForward", Napi::Function::New(env, CrossEntropyForward));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward));
  exports.Set("adamwStep", Napi::Function::New(env, AdamwStep));
  exports.Set("axpyF32", Napi::Function::New(env, AxpyF32));
  exports.Set("clipGradNorm", Napi::Function::New(env, ClipGradNorm));
  exports.Set("lrAt", Napi::Function::New(env, LrAt));
  exports.Set("rngFill", Napi::Function::New(env, RngFill));
}

}  // namespace vpaddon
