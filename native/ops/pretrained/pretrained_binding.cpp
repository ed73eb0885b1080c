// Bindings of the CUDA building blocks the pretrained models compose on device
// (lib/pretrained/device.ts): each takes one object of named fields, device
// tensors as CUDA buffer handles and index arrays as host Int32Arrays. The
// kernels: vp/pretrained_kernels.h (cuda/pretrained.cu), the CUDA LayerNorm /
// GELU (vp/norm_act.h), RMSNorm / SwiGLU (vp/layers.h), AdamW and the sum of
// squares (vp/optim.h), and the float32 × bfloat16 product (vp/gemm_f32_bf16.h).
// The TypeScript side validates first; every size memory safety depends on is
// checked again here (each handle's byte size against the count it must hold,
// each host array's length), and the core checks every index against its bound.
// In a CPU-only build the calls report that CUDA is unavailable.
#include <string>

#include "addon/addon.h"
#include "vp/gemm_f32_bf16.h"
#include "vp/layers.h"
#include "vp/norm_act.h"
#include "vp/optim.h"
#include "vp/pretrained_kernels.h"

namespace vpaddon {
namespace {

int64_t Count(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  // At most 2^31 - 1 (a tensor's element limit), so products of two counts never overflow.
  if (!(d >= 0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw Napi::RangeError::New(v.Env(), std::string(name) + ": expected an integer in [0, 2^31)");
  return static_cast<int64_t>(d);
}

// a·b·c elements (each factor a Count), refused past 2^40 so no product overflows.
int64_t Elems(Napi::Env env, int64_t a, int64_t b, int64_t c, const char* name) {
  const double p = static_cast<double>(a) * static_cast<double>(b) * static_cast<double>(c);
  if (p > 1099511627776.0) throw Napi::RangeError::New(env, std::string(name) + ": too many elements");
  return a * b * c;
}

float Num(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a number");
  return static_cast<float>(v.As<Napi::Number>().DoubleValue());
}

bool Flag(const Napi::Value& v) { return v.ToBoolean().Value(); }

// A float32 device buffer of exactly `count` values (null/undefined allowed when nullable).
float* F32(const Napi::Value& v, int64_t count, const char* name, bool nullable = false) {
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  return CudaView(v, {count}, vp::DType::kFloat32, name).as<float>();
}

const uint16_t* Bf16(const Napi::Value& v, int64_t count, const char* name) {
  return static_cast<const uint16_t*>(CudaView(v, {count}, vp::DType::kBFloat16, name).data);
}

// A host Int32Array of exactly `len` values.
const int32_t* HostI32(const Napi::Value& v, int64_t len, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected an Int32Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != len)
    throw Napi::RangeError::New(v.Env(), std::string(name) + ": holds " + std::to_string(ta.ElementLength()) +
                                             " values, expected " + std::to_string(len));
  return reinterpret_cast<const int32_t*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

// A host Int32Array of any length: its values and (in *n) its length.
const int32_t* HostI32(const Napi::Value& v, const char* name, int64_t* n) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected an Int32Array");
  *n = static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength());
  return HostI32(v, *n, name);
}

// A host Float32Array of exactly `len` values.
const float* HostF32(const Napi::Value& v, int64_t len, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a Float32Array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != len)
    throw Napi::RangeError::New(v.Env(), std::string(name) + ": holds " + std::to_string(ta.ElementLength()) +
                                             " values, expected " + std::to_string(len));
  return reinterpret_cast<const float*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

vp::GeluKind Kind(const Napi::Value& v) {
  const int64_t k = Count(v, "kind");
  if (k > 2) throw Napi::RangeError::New(v.Env(), "kind: expected 0 (erf), 1 (tanh) or 2 (quick)");
  return static_cast<vp::GeluKind>(k);
}

// devAxpy({ y, x, alpha, n }): y += alpha·x
Napi::Value Axpy(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devAxpy");
  const int64_t n = Count(a.Get("n"), "n");
  ThrowIfError(info.Env(), vp::cuda::axpy(F32(a.Get("y"), n, "y"), F32(a.Get("x"), n, "x"), Num(a.Get("alpha"), "alpha"), n));
  return info.Env().Undefined();
}

// devScale({ x, alpha, n })
Napi::Value Scale(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devScale");
  const int64_t n = Count(a.Get("n"), "n");
  ThrowIfError(info.Env(), vp::cuda::scale(F32(a.Get("x"), n, "x"), Num(a.Get("alpha"), "alpha"), n));
  return info.Env().Undefined();
}

// devMul({ y, x, n }): y *= x
Napi::Value Mul(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devMul");
  const int64_t n = Count(a.Get("n"), "n");
  ThrowIfError(info.Env(), vp::cuda::mul_inplace(F32(a.Get("y"), n, "y"), F32(a.Get("x"), n, "x"), n));
  return info.Env().Undefined();
}

// devAddBias({ y, b, rows, cols })
Napi::Value AddBias(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devAddBias");
  const int64_t rows = Count(a.Get("rows"), "rows"), cols = Count(a.Get("cols"), "cols");
  ThrowIfError(info.Env(), vp::cuda::add_bias_rows(F32(a.Get("y"), rows * cols, "y"), F32(a.Get("b"), cols, "b"), rows, cols));
  return info.Env().Undefined();
}

// devGatherRows({ src, srcRows, rows: Int32Array, d, out })
Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devGatherRows");
  const int64_t srcRows = Count(a.Get("srcRows"), "srcRows"), d = Count(a.Get("d"), "d");
  int64_t n = 0;
  const int32_t* rows = HostI32(a.Get("rows"), "rows", &n);
  ThrowIfError(info.Env(), vp::cuda::gather_rows(F32(a.Get("src"), srcRows * d, "src"), srcRows, rows, n, d,
                                          F32(a.Get("out"), n * d, "out")));
  return info.Env().Undefined();
}

// devScatterAddRows({ src, rows: Int32Array, d, dst, dstRows })
Napi::Value ScatterAddRows(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devScatterAddRows");
  const int64_t dstRows = Count(a.Get("dstRows"), "dstRows"), d = Count(a.Get("d"), "d");
  int64_t n = 0;
  const int32_t* rows = HostI32(a.Get("rows"), "rows", &n);
  ThrowIfError(info.Env(), vp::cuda::scatter_add_rows(F32(a.Get("src"), n * d, "src"), rows, n, d,
                                               F32(a.Get("dst"), dstRows * d, "dst"), dstRows));
  return info.Env().Undefined();
}

// devEmbedding({ table, bf16, vocab, d, ids: Int32Array, out })
Napi::Value Embedding(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devEmbedding");
  const int64_t vocab = Count(a.Get("vocab"), "vocab"), d = Count(a.Get("d"), "d");
  const bool bf16 = Flag(a.Get("bf16"));
  int64_t n = 0;
  const int32_t* ids = HostI32(a.Get("ids"), "ids", &n);
  const void* table = bf16 ? static_cast<const void*>(Bf16(a.Get("table"), vocab * d, "table"))
                           : static_cast<const void*>(F32(a.Get("table"), vocab * d, "table"));
  ThrowIfError(info.Env(), vp::cuda::embedding_lookup(table, bf16, vocab, d, ids, n,
                                               F32(a.Get("out"), n * d, "out")));
  return info.Env().Undefined();
}

// devEmbeddingBackward({ dOut, ids: Int32Array, vocab, d, dTable, accumulate })
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devEmbeddingBackward");
  const int64_t vocab = Count(a.Get("vocab"), "vocab"), d = Count(a.Get("d"), "d");
  int64_t n = 0;
  const int32_t* ids = HostI32(a.Get("ids"), "ids", &n);
  ThrowIfError(info.Env(), vp::cuda::embedding_grad(F32(a.Get("dOut"), n * d, "dOut"), ids, n, vocab, d,
                                             F32(a.Get("dTable"), vocab * d, "dTable"), Flag(a.Get("accumulate"))));
  return info.Env().Undefined();
}

// devRope({ x, positions: Int32Array, heads, headDim, theta, inverse, out }) or, with
// { cos, sin, tablePositions } (host Float32Arrays [tablePositions, headDim/2]), the table form.
Napi::Value Rope(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devRope");
  const int64_t heads = Count(a.Get("heads"), "heads"), hd = Count(a.Get("headDim"), "headDim");
  int64_t t = 0;
  const int32_t* pos = HostI32(a.Get("positions"), "positions", &t);
  const int64_t size = Elems(info.Env(), t, heads, hd, "x");
  const float* x = F32(a.Get("x"), size, "x");
  float* out = F32(a.Get("out"), size, "out");
  const bool inverse = Flag(a.Get("inverse"));
  if (a.Get("cos").IsUndefined() || a.Get("cos").IsNull()) {
    ThrowIfError(info.Env(), vp::cuda::rope_theta(x, pos, t, heads, hd, Num(a.Get("theta"), "theta"), inverse, out));
  } else {
    const int64_t P = Count(a.Get("tablePositions"), "tablePositions");
    ThrowIfError(info.Env(), vp::cuda::rope_table(x, pos, t, heads, hd, HostF32(a.Get("cos"), P * (hd / 2), "cos"),
                                                  HostF32(a.Get("sin"), P * (hd / 2), "sin"), P, inverse, out));
  }
  return info.Env().Undefined();
}

// devRmsnormForward({ x, gain, rows, dim, eps, y, rstd })
Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devRmsnormForward");
  const int64_t rows = Count(a.Get("rows"), "rows"), dim = Count(a.Get("dim"), "dim");
  ThrowIfError(info.Env(), vp::cuda::rmsnorm_forward(F32(a.Get("x"), rows * dim, "x"), F32(a.Get("gain"), dim, "gain"), rows, dim,
                                              Num(a.Get("eps"), "eps"), F32(a.Get("y"), rows * dim, "y"),
                                              F32(a.Get("rstd"), rows, "rstd")));
  return info.Env().Undefined();
}

// devRmsnormBackward({ dy, x, gain, rstd, rows, dim, eps, dx, dGain, accumulate })
Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devRmsnormBackward");
  const int64_t rows = Count(a.Get("rows"), "rows"), dim = Count(a.Get("dim"), "dim");
  ThrowIfError(info.Env(), vp::cuda::rmsnorm_backward(F32(a.Get("dy"), rows * dim, "dy"), F32(a.Get("x"), rows * dim, "x"),
                                               F32(a.Get("gain"), dim, "gain"), F32(a.Get("rstd"), rows, "rstd"), rows, dim,
                                               Num(a.Get("eps"), "eps"), F32(a.Get("dx"), rows * dim, "dx"),
                                               F32(a.Get("dGain"), dim, "dGain"), Flag(a.Get("accumulate"))));
  return info.Env().Undefined();
}

// devSwigluForward({ gate, up, rows, ffn, h })
Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devSwigluForward");
  const int64_t rows = Count(a.Get("rows"), "rows"), f = Count(a.Get("ffn"), "ffn");
  ThrowIfError(info.Env(), vp::cuda::swiglu_forward(F32(a.Get("gate"), rows * f, "gate"), F32(a.Get("up"), rows * f, "up"), rows, f,
                                             f, F32(a.Get("h"), rows * f, "h")));
  return info.Env().Undefined();
}

// devSwigluBackward({ dh, gate, up, rows, ffn, dGate, dUp })
Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devSwigluBackward");
  const int64_t rows = Count(a.Get("rows"), "rows"), f = Count(a.Get("ffn"), "ffn");
  ThrowIfError(info.Env(), vp::cuda::swiglu_backward(F32(a.Get("dh"), rows * f, "dh"), F32(a.Get("gate"), rows * f, "gate"),
                                              F32(a.Get("up"), rows * f, "up"), rows, f, f,
                                              F32(a.Get("dGate"), rows * f, "dGate"), F32(a.Get("dUp"), rows * f, "dUp")));
  return info.Env().Undefined();
}

// devLayernormForward({ x, gamma, beta|null, rows, dim, eps, y, mean, rstd })
Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devLayernormForward");
  const int64_t rows = Count(a.Get("rows"), "rows"), dim = Count(a.Get("dim"), "dim");
  ThrowIfError(info.Env(), vp::cuda::layernorm_forward(F32(a.Get("x"), rows * dim, "x"), F32(a.Get("gamma"), dim, "gamma"),
                                                F32(a.Get("beta"), dim, "beta", true), rows, dim, Num(a.Get("eps"), "eps"),
                                                F32(a.Get("y"), rows * dim, "y"), F32(a.Get("mean"), rows, "mean"),
                                                F32(a.Get("rstd"), rows, "rstd")));
  return info.Env().Undefined();
}

// devLayernormBackward({ dy, x, gamma, mean, rstd, rows, dim, eps, dx, dGamma|null, dBeta|null, accumulate })
Napi::Value LayernormBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devLayernormBackward");
  const int64_t rows = Count(a.Get("rows"), "rows"), dim = Count(a.Get("dim"), "dim");
  ThrowIfError(info.Env(), vp::cuda::layernorm_backward(
                        F32(a.Get("dy"), rows * dim, "dy"), F32(a.Get("x"), rows * dim, "x"), F32(a.Get("gamma"), dim, "gamma"),
                        F32(a.Get("mean"), rows, "mean"), F32(a.Get("rstd"), rows, "rstd"), rows, dim,
                        Num(a.Get("eps"), "eps"), F32(a.Get("dx"), rows * dim, "dx"),
                        F32(a.Get("dGamma"), dim, "dGamma", true), F32(a.Get("dBeta"), dim, "dBeta", true),
                        Flag(a.Get("accumulate"))));
  return info.Env().Undefined();
}

// devGeluForward({ x, n, kind, y })
Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devGeluForward");
  const int64_t n = Count(a.Get("n"), "n");
  ThrowIfError(info.Env(), vp::cuda::gelu_forward(F32(a.Get("x"), n, "x"), n, Kind(a.Get("kind")), F32(a.Get("y"), n, "y")));
  return info.Env().Undefined();
}

// devGeluBackward({ dy, x, n, kind, dx })
Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devGeluBackward");
  const int64_t n = Count(a.Get("n"), "n");
  ThrowIfError(info.Env(), vp::cuda::gelu_backward(F32(a.Get("dy"), n, "dy"), F32(a.Get("x"), n, "x"), n, Kind(a.Get("kind")),
                                            F32(a.Get("dx"), n, "dx")));
  return info.Env().Undefined();
}

// devMatmulF32Bf16({ a, b, bias|null, out, m, n, k, transB })
Napi::Value MatmulF32Bf16(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devMatmulF32Bf16");
  vp::GemmF32Bf16Args g;
  g.m = Count(a.Get("m"), "m"), g.n = Count(a.Get("n"), "n"), g.k = Count(a.Get("k"), "k");
  g.trans_b = Flag(a.Get("transB"));
  g.a = F32(a.Get("a"), g.m * g.k, "a");
  g.b = Bf16(a.Get("b"), g.k * g.n, "b");
  g.bias = F32(a.Get("bias"), g.n, "bias", true);
  g.c = F32(a.Get("out"), g.m * g.n, "out");
  ThrowIfError(info.Env(), vp::cuda::gemm_f32_bf16(g));
  return info.Env().Undefined();
}

// devAdamw({ param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, step, gradScale })
Napi::Value Adamw(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devAdamw");
  const int64_t n = Count(a.Get("n"), "n");
  vp::AdamWConfig c;
  c.lr = Num(a.Get("lr"), "lr"), c.beta1 = Num(a.Get("beta1"), "beta1"), c.beta2 = Num(a.Get("beta2"), "beta2");
  c.eps = Num(a.Get("eps"), "eps"), c.weight_decay = Num(a.Get("weightDecay"), "weightDecay");
  c.step = Count(a.Get("step"), "step"), c.grad_scale = Num(a.Get("gradScale"), "gradScale");
  ThrowIfError(info.Env(), vp::cuda::adamw_step(F32(a.Get("param"), n, "param"), F32(a.Get("grad"), n, "grad"),
                                         F32(a.Get("m"), n, "m"), F32(a.Get("v"), n, "v"), n, c));
  return info.Env().Undefined();
}

// devSumSquares({ x, n }) -> number (double)
Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devSumSquares");
  const int64_t n = Count(a.Get("n"), "n");
  double out = 0.0;
  ThrowIfError(info.Env(), vp::cuda::sum_squares(F32(a.Get("x"), n, "x"), n, &out));
  return Napi::Number::New(info.Env(), out);
}

// devDecodeAttention({ q, kcache, vcache, cacheRows, base: Int32Array, nkeys: Int32Array, heads, kvHeads, headDim, scale, out })
Napi::Value DecodeAttention(const Napi::CallbackInfo& info) {
  const Napi::Object a = ArgsObject(info, "devDecodeAttention");
  const int64_t rows = Count(a.Get("cacheRows"), "cacheRows"), H = Count(a.Get("heads"), "heads"),
                Hkv = Count(a.Get("kvHeads"), "kvHeads"), D = Count(a.Get("headDim"), "headDim");
  int64_t n = 0;
  const int32_t* base = HostI32(a.Get("base"), "base", &n);
  const int64_t qn = Elems(info.Env(), n, H, D, "q"), cn = Elems(info.Env(), rows, Hkv, D, "kcache");
  ThrowIfError(info.Env(), vp::cuda::decode_attention_rows(
                        F32(a.Get("q"), qn, "q"), F32(a.Get("kcache"), cn, "kcache"),
                        F32(a.Get("vcache"), cn, "vcache"), rows, base,
                        HostI32(a.Get("nkeys"), n, "nkeys"), n, H, Hkv, D, Num(a.Get("scale"), "scale"),
                        F32(a.Get("out"), qn, "out")));
  return info.Env().Undefined();
}

}  // namespace

void InitPretrainedDevice(Napi::Env env, Napi::Object exports) {
  exports.Set("devAxpy", Napi::Function::New(env, Axpy));
  exports.Set("devScale", Napi::Function::New(env, Scale));
  exports.Set("devMul", Napi::Function::New(env, Mul));
  exports.Set("devAddBias", Napi::Function::New(env, AddBias));
  exports.Set("devGatherRows", Napi::Function::New(env, GatherRows));
  exports.Set("devScatterAddRows", Napi::Function::New(env, ScatterAddRows));
  exports.Set("devEmbedding", Napi::Function::New(env, Embedding));
  exports.Set("devEmbeddingBackward", Napi::Function::New(env, EmbeddingBackward));
  exports.Set("devRope", Napi::Function::New(env, Rope));
  exports.Set("devRmsnormForward", Napi::Function::New(env, RmsnormForward));
  exports.Set("devRmsnormBackward", Napi::Function::New(env, RmsnormBackward));
  exports.Set("devSwigluForward", Napi::Function::New(env, SwigluForward));
  exports.Set("devSwigluBackward", Napi::Function::New(env, SwigluBackward));
  exports.Set("devLayernormForward", Napi::Function::New(env, LayernormForward));
  exports.Set("devLayernormBackward", Napi::Function::New(env, LayernormBackward));
  exports.Set("devGeluForward", Napi::Function::New(env, GeluForward));
  exports.Set("devGeluBackward", Napi::Function::New(env, GeluBackward));
  exports.Set("devMatmulF32Bf16", Napi::Function::New(env, MatmulF32Bf16));
  exports.Set("devAdamw", Napi::Function::New(env, Adamw));
  exports.Set("devSumSquares", Napi::Function::New(env, SumSquares));
  exports.Set("devDecodeAttention", Napi::Function::New(env, DecodeAttention));
}

}  // namespace vpaddon
