// matmul({ a, aShape, b, bShape, out, transA, transB, dtype }): a, b, out are typed
// arrays (CPU) or CUDA handles; out is allocated by the TypeScript side.
#include "addon/addon.h"
#include "vp/gemm.h"

namespace vpaddon {
namespace {

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object args = ArgsObject(info, "matmul");
  auto a_shape = ShapeArg(args.Get("aShape"), "a");
  auto b_shape = ShapeArg(args.Get("bShape"), "b");
  bool ta = args.Get("transA").ToBoolean(), tb = args.Get("transB").ToBoolean();
  if (a_shape.size() != 2 || b_shape.size() != 2) throw Napi::TypeError::New(env, "matmul: a and b must be 2-D");
  int64_t m = ta ? a_shape[1] : a_shape[0];
  int64_t n = tb ? b_shape[0] : b_shape[1];
  std::vector<int64_t> out_shape{m, n};
  vp::TensorView a, b, out;
  if (args.Get("a").IsExternal()) {
    vp::DType dt = DTypeArg(args.Get("dtype"), "dtype");
    a = CudaView(args.Get("a"), a_shape, dt, "a");
    b = CudaView(args.Get("b"), b_shape, dt, "b");
    out = CudaView(args.Get("out"), out_shape, dt, "out");
  } else {
    a = CpuView(args.Get("a"), a_shape, "a");
    b = CpuView(args.Get("b"), b_shape, "b");
    out = CpuView(args.Get("out"), out_shape, "out");
  }
  ThrowIfError(env, vp::matmul(a, b, ta, tb, out));
  return env.Undefined();
}

}  // namespace

void InitMatmul(Napi::Env env, Napi::Object exports) {
  exports.Set("matmul", Napi::Function::New(env, Matmul));
}

}  // namespace vpaddon
