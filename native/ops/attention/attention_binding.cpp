// attention(q, qShape, k, kShape, v, out, lse, cuQ, cuK, causal, scale, dtype) and
// attentionBackward(dout, q, qShape, k, kShape, v, out, lse, dq, dk, dv, cuQ, cuK,
// causal, scale, dtype): q/k/v/... are typed arrays (CPU) or CUDA handles, the
// outputs allocated by the TypeScript side; cuQ/cuK are Int32Arrays or null;
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

vp::AttentionOptions Options(const Napi::CallbackInfo& info, int at, Cu& cq, Cu& ck) {
  cq = CuArg(info[at], "cuSeqlensQ");
  ck = CuArg(info[at + 1], "cuSeqlensK");
  vp::AttentionOptions o;
  if (cq.given) {
    o.cu_seqlens_q = cq.data.data();
    o.batch = static_cast<int64_t>(cq.data.size()) - 1;
  }
  if (ck.given) {
    if (!cq.given) throw Napi::TypeError::New(info.Env(), "cuSeqlensK needs cuSeqlensQ");
    if (ck.data.size() != cq.data.size())
      throw Napi::RangeError::New(info.Env(), "cuSeqlensK must have as many entries as cuSeqlensQ");
    o.cu_seqlens_k = ck.data.data();
  }
  o.causal = info[at + 2].ToBoolean();
  if (info[at + 3].IsNumber()) o.scale = info[at + 3].As<Napi::Number>().FloatValue();
  return o;
}

// A view of a float tensor argument: CPU typed array or CUDA handle of dtype dt.
vp::TensorView View(const Napi::Value& v, const std::vector<int64_t>& shape, bool cuda, vp::DType dt,
                    const char* name) {
  return cuda ? CudaView(v, shape, dt, name) : CpuView(v, shape, name);
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto qs = ShapeArg(info[1], "q");
  auto ks = ShapeArg(info[3], "k");
  if (qs.size() != 3 || ks.size() != 3) throw Napi::TypeError::New(env, "attention: q and k must be 3-D");
  const bool cuda = info[0].IsExternal();
  const vp::DType dt = DTypeArg(info[11], "dtype");
  std::vector<int64_t> lse_shape{qs[1], qs[0]};
  vp::TensorView q = View(info[0], qs, cuda, dt, "q"), k = View(info[2], ks, cuda, dt, "k"),
                 v = View(info[4], ks, cuda, dt, "v"), out = View(info[5], qs, cuda, dt, "out");
  vp::TensorView lse = View(info[6], lse_shape, cuda, vp::DType::kFloat32, "lse");
  Cu cq, ck;
  vp::AttentionOptions o = Options(info, 7, cq, ck);
  ThrowIfError(env, vp::attention(q, k, v, o, out, lse));
  return env.Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto qs = ShapeArg(info[2], "q");
  auto ks = ShapeArg(info[4], "k");
  if (qs.size() != 3 || ks.size() != 3) throw Napi::TypeError::New(env, "attentionBackward: q and k must be 3-D");
  const bool cuda = info[1].IsExternal();
  const vp::DType dt = DTypeArg(info[15], "dtype");
  std::vector<int64_t> lse_shape{qs[1], qs[0]};
  vp::TensorView dout = View(info[0], qs, cuda, dt, "dout"), q = View(info[1], qs, cuda, dt, "q"),
                 k = View(info[3], ks, cuda, dt, "k"), v = View(info[5], ks, cuda, dt, "v"),
                 out = View(info[6], qs, cuda, dt, "out");
  vp::TensorView lse = View(info[7], lse_shape, cuda, vp::DType::kFloat32, "lse");
  vp::TensorView dq = View(info[8], qs, cuda, dt, "dq"), dk = View(info[9], ks, cuda, dt, "dk"),
                 dv = View(info[10], ks, cuda, dt, "dv");
  Cu cq, ck;
  vp::AttentionOptions o = Options(info, 11, cq, ck);
  ThrowIfError(env, vp::attention_backward(dout, q, k, v, out, lse, o, dq, dk, dv));
  return env.Undefined();
}

}  // namespace

void InitAttention(Napi::Env env, Napi::Object exports) {
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward));
}

}  // namespace vpaddon
