// Bindings of LayerNorm and GELU (vp/norm_act.h) for lib/ops/norm-act.ts. CPU
// Float32Arrays only; each takes one object of named fields. The TypeScript
// side validates shapes first; every length memory safety depends on is
// checked again here against the sizes passed in.
#include <string>

#include "addon/addon.h"
#include "vp/norm_act.h"

namespace vpaddon {
namespace {

int64_t Count(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw Napi::RangeError::New(v.Env(), std::string(name) + ": expected a non-negative integer");
  return static_cast<int64_t>(d);
}

float* Floats(const Napi::Value& v, int64_t len, const char* name, bool nullable = false) {
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a Float32Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != len)
    throw Napi::RangeError::New(v.Env(), std::string(name) + ": holds " + std::to_string(ta.ElementLength()) +
                                             " elements, expected " + std::to_string(len));
  return reinterpret_cast<float*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

float Eps(const Napi::Value& v) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), "eps: expected a number");
  return static_cast<float>(v.As<Napi::Number>().DoubleValue());
}

vp::GeluKind Kind(const Napi::Value& v) {
  const int64_t k = Count(v, "kind");
  if (k > 2) throw Napi::RangeError::New(v.Env(), "kind: expected 0 (erf), 1 (tanh) or 2 (quick)");
  return static_cast<vp::GeluKind>(k);
}

// layernormForward({ x, gamma, beta|null, rows, dim, eps, y, mean, rstd })
Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "layernormForward");
  const int64_t rows = Count(a.Get("rows"), "rows"), dim = Count(a.Get("dim"), "dim");
  ThrowIfError(info.Env(), vp::layernorm_forward(Floats(a.Get("x"), rows * dim, "x"), Floats(a.Get("gamma"), dim, "gamma"),
                                                 Floats(a.Get("beta"), dim, "beta", true), rows, dim, Eps(a.Get("eps")),
                                                 Floats(a.Get("y"), rows * dim, "y"), Floats(a.Get("mean"), rows, "mean"),
                                                 Floats(a.Get("rstd"), rows, "rstd")));
  return info.Env().Undefined();
}

// layernormBackward({ dy, x, gamma, mean|null, rstd|null, rows, dim, eps, dx, dGamma|null, dBeta|null, accumulate })
Napi::Value LayernormBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "layernormBackward");
  const int64_t rows = Count(a.Get("rows"), "rows"), dim = Count(a.Get("dim"), "dim");
  ThrowIfError(info.Env(), vp::layernorm_backward(
                               Floats(a.Get("dy"), rows * dim, "dy"), Floats(a.Get("x"), rows * dim, "x"),
                               Floats(a.Get("gamma"), dim, "gamma"), Floats(a.Get("mean"), rows, "mean", true),
                               Floats(a.Get("rstd"), rows, "rstd", true), rows, dim, Eps(a.Get("eps")),
                               Floats(a.Get("dx"), rows * dim, "dx"), Floats(a.Get("dGamma"), dim, "dGamma", true),
                               Floats(a.Get("dBeta"), dim, "dBeta", true), a.Get("accumulate").ToBoolean().Value()));
  return info.Env().Undefined();
}

// geluForward({ x, n, kind, y })
Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "geluForward");
  const int64_t n = Count(a.Get("n"), "n");
  ThrowIfError(info.Env(), vp::gelu_forward(Floats(a.Get("x"), n, "x"), n, Kind(a.Get("kind")), Floats(a.Get("y"), n, "y")));
  return info.Env().Undefined();
}

// geluBackward({ dy, x, n, kind, dx })
Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "geluBackward");
  const int64_t n = Count(a.Get("n"), "n");
  ThrowIfError(info.Env(), vp::gelu_backward(Floats(a.Get("dy"), n, "dy"), Floats(a.Get("x"), n, "x"), n,
                                             Kind(a.Get("kind")), Floats(a.Get("dx"), n, "dx")));
  return info.Env().Undefined();
}

}  // namespace

void InitNormAct(Napi::Env env, Napi::Object exports) {
  exports.Set("layernormForward", Napi::Function::New(env, LayernormForward));
  exports.Set("layernormBackward", Napi::Function::New(env, LayernormBackward));
  exports.Set("geluForward", Napi::Function::New(env, GeluForward));
  exports.Set("geluBackward", Napi::Function::New(env, GeluBackward));
}

}  // namespace vpaddon
