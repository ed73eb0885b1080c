// attention({ q, qShape, k, kShape, v, out, lse, cuSeqlensQ, cuSeqlensK, causal, scale, dtype })
// and attentionBackward({ dout, q, qShape, k, kShape, v, out, lse, dq, dk, dv, cuSeqlensQ,
// cuSeqlensK, causal, scale, dtype }): q/k/v/... are typed arrays (CPU) or CUDA handles,
// the outputs allocated by the TypeScript side; cuSeqlensQ/K are Int32Arrays or null;
// scale a number or undefined (1/sqrt(D)). vp::attention validates everything
// again (shapes, sizes, cumulative lengths) before any kernel runs.
#include "addon/addon.h"
#include "vp/attention.h"

namespace vpaddon {
namespace {

struct Cu {
  std::vector<int32_t> data;  // a copy: the kernel never sees memory JS could resize
  bool given = false;
};

Cu CuArg(const Napi::Value& v, const char* name) {
  Cu cu;
  if (v.IsNull() || v.IsUndefined()) return cu;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(v.Env(), std::string(name) + " must be an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  if (a.ElementLength() < 2)
    throw Napi::RangeError::New(v.Env(), std::string(name) + " must hold B+1 >= 2 offsets");
  cu.data.assign(a.Data(), a.Data() + a.ElementLength());
  cu.given = true;
  return cu;
}

vp::AttentionOptions Options(const Napi::Object& args, Cu& cq, Cu& ck) {
  Napi::Env env = args.Env();
  cq = CuArg(args.Get("cuSeqlensQ"), "cuSeqlensQ");
  ck = CuArg(args.Get("cuSeqlensK"), "cuSeqlensK");
  vp::AttentionOptions o;
  if (cq.given) {
    o.cu_seqlens_q = cq.data.data();
    o.batch = static_cast<int64_t>(cq.data.size()) - 1;
  }
  if (ck.given) {
    if (!cq.given) throw Napi::TypeError::New(env, "cuSeqlensK needs cuSeqlensQ");
    if (ck.data.size() != cq.data.size())
      throw Napi::RangeError::New(env, "cuSeqlensK must have as many entries as cuSeqlensQ");
    o.cu_seqlens_k = ck.data.data();
  }
  o.causal = args.Get("causal").ToBoolean();
  const Napi::Value scale = args.Get("scale");
  if (scale.IsNumber()) o.scale = scale.As<Napi::Number>().FloatValue();
  return o;
}

// A view of a float tensor argument: CPU typed array or CUDA handle of dtype dt.
vp::TensorView View(const Napi::Value& v, const std::vector<int64_t>& shape, bool cuda, vp::DType dt,
                    const char* name) {
  return cuda ? CudaView(v, shape, dt, name) : CpuView(v, shape, name);
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "attention");
  auto qs = ShapeArg(a.Get("qShape"), "q");
  auto ks = ShapeArg(a.Get("kShape"), "k");
  if (qs.size() != 3 || ks.size() != 3) throw Napi::TypeError::New(env, "attention: q and k must be 3-D");
  const bool cuda = a.Get("q").IsExternal();
  const vp::DType dt = DTypeArg(a.Get("dtype"), "dtype");
  std::vector<int64_t> lse_shape{qs[1], qs[0]};
  vp::TensorView q = View(a.Get("q"), qs, cuda, dt, "q"), k = View(a.Get("k"), ks, cuda, dt, "k"),
                 v = View(a.Get("v"), ks, cuda, dt, "v"), out = View(a.Get("out"), qs, cuda, dt, "out");
  vp::TensorView lse = View(a.Get("lse"), lse_shape, cuda, vp::DType::kFloat32, "lse");
  Cu cq, ck;
  vp::AttentionOptions o = Options(a, cq, ck);
  ThrowIfError(env, vp::attention(q, k, v, o, out, lse));
  return env.Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "attentionBackward");
  auto qs = ShapeArg(a.Get("qShape"), "q");
  auto ks = ShapeArg(a.Get("kShape"), "k");
  if (qs.size() != 3 || ks.size() != 3) throw Napi::TypeError::New(env, "attentionBackward: q and k must be 3-D");
  const bool cuda = a.Get("q").IsExternal();
  const vp::DType dt = DTypeArg(a.Get("dtype"), "dtype");
  std::vector<int64_t> lse_shape{qs[1], qs[0]};
  vp::TensorView dout = View(a.Get("dout"), qs, cuda, dt, "dout"), q = View(a.Get("q"), qs, cuda, dt, "q"),
                 k = View(a.Get("k"), ks, cuda, dt, "k"), v = View(a.Get("v"), ks, cuda, dt, "v"),
                 out = View(a.Get("out"), qs, cuda, dt, "out");
  vp::TensorView lse = View(a.Get("lse"), lse_shape, cuda, vp::DType::kFloat32, "lse");
  vp::TensorView dq = View(a.Get("dq"), qs, cuda, dt, "dq"), dk = View(a.Get("dk"), ks, cuda, dt, "dk"),
                 dv = View(a.Get("dv"), ks, cuda, dt, "dv");
  Cu cq, ck;
  vp::AttentionOptions o = Options(a, cq, ck);
  ThrowIfError(env, vp::attention_backward(dout, q, k, v, out, lse, o, dq, dk, dv));
  return env.Undefined();
}

}  // namespace

void InitAttention(Napi::Env env, Napi::Object exports) {
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward));
}

}  // namespace vpaddon
