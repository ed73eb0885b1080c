// matmulF32Bf16({ a, b, bias, out, m, n, k, transB }): vp::gemm_f32_bf16 for
// lib/pretrained/bf16.ts (a, bias, out: Float32Arrays; b: a Uint16Array of bfloat16
// bits); matmulViaBf16(...): vp::gemm_f32_via_bf16; roundBf16(src, dst): vp::round_to_bf16. The TypeScript side validates shapes first; every length that
// memory safety depends on is checked again here.
#include <string>

#include "addon/addon.h"
#include "vp/gemm.h"
#include "vp/gemm_bf16.h"
#include "vp/gemm_f32_bf16.h"

namespace vpaddon {
namespace {

int64_t Dim(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("matmulF32Bf16: ") + name + ": expected a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw Napi::RangeError::New(env, std::string("matmulF32Bf16: ") + name + ": expected a non-negative integer");
  return static_cast<int64_t>(d);
}

template <typename T>
T* Typed(const Napi::Value& v, napi_typedarray_type type, int64_t len, const char* name, bool nullable = false,
         const char* fn = "matmulF32Bf16") {
  Napi::Env env = v.Env();
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw Napi::TypeError::New(env, std::string(fn) + ": " + name +
                                        (type == napi_float32_array ? ": expected a Float32Array" : ": expected a Uint16Array of bfloat16 bits"));
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != len)
    throw Napi::RangeError::New(env, std::string(fn) + ": " + name + ": holds " + std::to_string(ta.ElementLength()) +
                                         " values, expected " + std::to_string(len));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

Napi::Value MatmulF32Bf16(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "matmulF32Bf16");
  vp::GemmF32Bf16Args g;
  g.m = Dim(a.Get("m"), "m"), g.n = Dim(a.Get("n"), "n"), g.k = Dim(a.Get("k"), "k");
  g.trans_b = a.Get("transB").ToBoolean();
  g.a = Typed<float>(a.Get("a"), napi_float32_array, g.m * g.k, "a");
  g.b = Typed<uint16_t>(a.Get("b"), napi_uint16_array, g.k * g.n, "b");
  g.bias = Typed<float>(a.Get("bias"), napi_float32_array, g.n, "bias", true);
  g.c = Typed<float>(a.Get("out"), napi_float32_array, g.m * g.n, "out");
  ThrowIfError(info.Env(), vp::gemm_f32_bf16(g));
  return info.Env().Undefined();
}

// matmulViaBf16({ a, b, out, m, n, k, transA, transB }): vp::gemm_f32_via_bf16, all three
// Float32Arrays (op(A) [m, k] stored [k, m] with transA; op(B) [k, n] stored [n, k] with
// transB; out [m, n]): both operands rounded to bfloat16, float32 accumulation.
Napi::Value MatmulViaBf16(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "matmulViaBf16");
  vp::GemmArgs g;
  g.m = Dim(a.Get("m"), "m"), g.n = Dim(a.Get("n"), "n"), g.k = Dim(a.Get("k"), "k");
  g.trans_a = a.Get("transA").ToBoolean(), g.trans_b = a.Get("transB").ToBoolean();
  g.a = Typed<float>(a.Get("a"), napi_float32_array, g.m * g.k, "a", false, "matmulViaBf16");
  g.b = Typed<float>(a.Get("b"), napi_float32_array, g.k * g.n, "b", false, "matmulViaBf16");
  g.c = Typed<float>(a.Get("out"), napi_float32_array, g.m * g.n, "out", false, "matmulViaBf16");
  g.lda = g.trans_a ? g.m : g.k, g.ldb = g.trans_b ? g.k : g.n, g.ldc = g.n;
  ThrowIfError(info.Env(), vp::gemm_f32_via_bf16(g));
  return info.Env().Undefined();
}

// roundBf16(src: Float32Array, dst: Uint16Array): dst = bfloat16(src), same lengths.
Napi::Value RoundBf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray())
    throw Napi::TypeError::New(env, "roundBf16: expected (Float32Array, Uint16Array)");
  const Napi::TypedArray s = info[0].As<Napi::TypedArray>();
  const int64_t n = static_cast<int64_t>(s.ElementLength());
  const float* src = Typed<float>(info[0], napi_float32_array, n, "src", false, "roundBf16");
  uint16_t* dst = Typed<uint16_t>(info[1], napi_uint16_array, n, "dst", false, "roundBf16");
  vp::round_to_bf16(src, n, dst);
  return env.Undefined();
}

}  // namespace

void InitMatmulF32Bf16(Napi::Env env, Napi::Object exports) {
  exports.Set("matmulF32Bf16", Napi::Function::New(env, MatmulF32Bf16));
  exports.Set("roundBf16", Napi::Function::New(env, RoundBf16));
  exports.Set("matmulViaBf16", Napi::Function::New(env, MatmulViaBf16));
}

}  // namespace vpaddon
