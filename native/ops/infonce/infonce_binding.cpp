// infoNce({ mode, queries, queriesShape, keys, keysShape, dtype, positive, temperature,
//           normalize, gradLoss, lse, dQueries, dKeys }) -> { loss, dLogTemperature }
//
// mode 0: forward (writes lse), 1: backward (reads lse, writes the gradients),
// 2: both in one pass. Tensors are typed arrays (CPU) or CUDA handles; the
// outputs are allocated by the TypeScript side; positive is always an Int32Array.
#include "addon/addon.h"
#include "vp/infonce.h"

namespace vpaddon {
namespace {

Napi::Value InfoNce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "infoNce");
  const int mode = a.Get("mode").As<Napi::Number>().Int32Value();
  if (mode < 0 || mode > 2) throw Napi::RangeError::New(env, "infoNce: mode must be 0, 1 or 2");
  const auto q_shape = ShapeArg(a.Get("queriesShape"), "queries");
  const auto k_shape = ShapeArg(a.Get("keysShape"), "keys");
  if (q_shape.size() != 2 || k_shape.size() != 2)
    throw Napi::TypeError::New(env, "infoNce: queries and keys must be 2-D");
  const bool cuda = a.Get("queries").IsExternal();
  const vp::DType dtype = DTypeArg(a.Get("dtype"), "dtype");
  auto view = [&](const Napi::Value& v, const std::vector<int64_t>& shape, vp::DType t, const char* name) {
    return cuda ? CudaView(v, shape, t, name) : CpuView(v, shape, name);
  };
  const vp::TensorView q = view(a.Get("queries"), q_shape, dtype, "queries");
  const vp::TensorView k = view(a.Get("keys"), k_shape, dtype, "keys");
  const vp::TensorView positive = CpuView(a.Get("positive"), {q_shape[0]}, "positive");
  vp::InfoNceOptions opts;
  opts.temperature = a.Get("temperature").As<Napi::Number>().FloatValue();
  opts.normalize = a.Get("normalize").ToBoolean();
  opts.grad_loss = a.Get("gradLoss").As<Napi::Number>().FloatValue();
  const vp::TensorView lse = view(a.Get("lse"), {q_shape[0]}, vp::DType::kFloat32, "lse");
  double loss = 0.0, dlt = 0.0;
  if (mode == 0) {
    ThrowIfError(env, vp::info_nce(q, k, positive, opts, lse, &loss));
  } else {
    const vp::TensorView dq = view(a.Get("dQueries"), q_shape, dtype, "dQueries");
    const vp::TensorView dk = view(a.Get("dKeys"), k_shape, dtype, "dKeys");
    if (mode == 1) ThrowIfError(env, vp::info_nce_backward(q, k, lse, positive, opts, dq, dk, &dlt));
    else ThrowIfError(env, vp::info_nce_with_grad(q, k, positive, opts, lse, dq, dk, &loss, &dlt));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", loss);
  out.Set("dLogTemperature", dlt);
  return out;
}

}  // namespace

void InitInfoNce(Napi::Env env, Napi::Object exports) {
  exports.Set("infoNce", Napi::Function::New(env, InfoNce));
}

}  // namespace vpaddon
