// matmul(a, aShape, b, bShape, out, transA, transB, dtype): a, b, out are typed
// arrays (CPU) or CUDA handles; out is allocated by the TypeScript side.
#include "addon/addon.h"
#include "vp/gemm.h"

namespace vpaddon {
namespace {

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto a_shape = ShapeArg(info[1], "a");
  auto b_shape = ShapeArg(info[3], "b");
  bool ta = info[5].ToBoolean(), tb = info[6].ToBoolean();
  if (a_shape.size() != 2 || b_shape.size() != 2) throw Napi::TypeError::New(env, "matmul: a and b must be 2-D");
  int64_t m = ta ? a_shape[1] : a_shape[0];
  int64_t n = tb ? b_shape[0] : b_shape[1];
  std::vector<int64_t> out_shape{m, n};
  vp::TensorView a, b, out;
  if (info[0].IsExternal()) {
    vp::DType dt = DTypeArg(info[7], "dtype");
    a = CudaView(info[0], a_shape, dt, "a");
    b = CudaView(info[2], b_shape, dt, "b");
    out = CudaView(info[4], out_shape, dt, "out");
  } else {
    a = CpuView(info[0], a_shape, "a");
    b = CpuView(info[2], b_shape, "b");
    out = CpuView(info[4], out_shape, "out");
  }
  ThrowIfError(env, vp::matmul(a, b, ta, tb, out));
  return env.Undefined();
}

}  // namespace

void InitMatmul(Napi::Env env, Napi::Object exports) {
  exports.Set("matmul", Napi::Function::New(env, Matmul));
}

}  // namespace vpaddon
