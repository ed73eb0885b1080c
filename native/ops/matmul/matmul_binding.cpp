// matmul({ a, aShape, b, bShape, out, transA, transB, dtype }): a, b, out are typed
// arrays (CPU) or CUDA handles; out is allocated by the TypeScript side.
#include "addon/addon.h"
#include "vp/gemm.h"

namespace vpaddon {
namespace {

// A CPU bfloat16 tensor: a Uint16Array of exactly the shape's element count.
vp::TensorView Bf16View(const Napi::Value& data, const std::vector<int64_t>& shape, const char* name) {
  Napi::Env env = data.Env();
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array)
    throw Napi::TypeError::New(env, std::string("matmul: ") + name + ": expected a Uint16Array of bfloat16 bits");
  Napi::Uint16Array arr = data.As<Napi::Uint16Array>();
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  if (static_cast<int64_t>(arr.ElementLength()) != numel)
    throw Napi::RangeError::New(env, std::string("matmul: ") + name + ": data holds " + std::to_string(arr.ElementLength()) +
                                         " values, the shape needs " + std::to_string(numel));
  vp::TensorView t;
  t.data = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  for (int64_t s : shape) t.shape[t.ndim++] = s;
  t.dtype = vp::DType::kBFloat16;
  t.device = vp::Device::kCPU;
  return t;
}

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
  } else if (args.Get("a").IsTypedArray() && args.Get("a").As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array) {
    // bfloat16 on the CPU: Uint16Arrays holding the bits (lib/tensor.ts), dtype said by the caller
    const vp::DType dt = DTypeArg(args.Get("dtype"), "dtype");
    if (dt != vp::DType::kBFloat16) throw Napi::TypeError::New(env, "matmul: a CPU Uint16Array must hold bfloat16");
    a = Bf16View(args.Get("a"), a_shape, "a");
    b = Bf16View(args.Get("b"), b_shape, "b");
    out = Bf16View(args.Get("out"), out_shape, "out");
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
