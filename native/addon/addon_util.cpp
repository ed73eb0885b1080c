#include <cmath>

#include "addon.h"

namespace vpaddon {

void ThrowIfError(Napi::Env env, const vp::Status& s) {
  if (s.ok()) return;
  switch (s.code()) {
    case vp::StatusCode::kOutOfRange: throw Napi::RangeError::New(env, s.message());
    case vp::StatusCode::kInvalidArgument: throw Napi::TypeError::New(env, s.message());
    default: throw Napi::Error::New(env, s.message());
  }
}

std::vector<int64_t> ShapeArg(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(name) + ": shape must be an array");
  Napi::Array arr = v.As<Napi::Array>();
  if (arr.Length() > vp::kMaxDims)
    throw Napi::RangeError::New(env, std::string(name) + ": at most " + std::to_string(vp::kMaxDims) + " dimensions");
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value d = arr.Get(i);
    if (!d.IsNumber()) throw Napi::TypeError::New(env, std::string(name) + ": shape entries must be numbers");
    double x = d.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(x) || x < 0 || std::floor(x) != x || x > 9.0e15)
      throw Napi::RangeError::New(env, std::string(name) + ": shape entries must be non-negative integers");
    shape.push_back(static_cast<int64_t>(x));
  }
  return shape;
}

Napi::Object ArgsObject(const Napi::CallbackInfo& info, const char* fn, uint32_t index) {
  const Napi::Value v = info[index];
  if (!v.IsObject() || v.IsArray() || v.IsTypedArray())
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected an object of named arguments");
  return v.As<Napi::Object>();
}

vp::DType DTypeArg(const Napi::Value& v, const char* name) {
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s == "float32") return vp::DType::kFloat32;
  if (s == "int32") return vp::DType::kInt32;
  if (s == "bfloat16") return vp::DType::kBFloat16;
  if (s == "float16") return vp::DType::kFloat16;
  throw Napi::TypeError::New(v.Env(), std::string(name) + ": unknown dtype '" + s + "'");
}

static vp::TensorView MakeView(void* data, const std::vector<int64_t>& shape, vp::DType dt,
                               vp::Device dev) {
  vp::TensorView t;
  t.data = data;
  t.dtype = dt;
  t.device = dev;
  t.ndim = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
  return t;
}

vp::TensorView CpuView(const Napi::Value& data, const std::vector<int64_t>& shape,
                       const char* name) {
  Napi::Env env = data.Env();
  if (!data.IsTypedArray())
    throw Napi::TypeError::New(env, std::string(name) + ": expected a typed array");
  Napi::TypedArray ta = data.As<Napi::TypedArray>();
  vp::DType dt;
  switch (ta.TypedArrayType()) {
    case napi_float32_array: dt = vp::DType::kFloat32; break;
    case napi_int32_array: dt = vp::DType::kInt32; break;
    default: throw Napi::TypeError::New(env, std::string(name) + ": expected a Float32Array or Int32Array");
  }
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  if (static_cast<int64_t>(ta.ElementLength()) != numel)
    throw Napi::RangeError::New(env, std::string(name) + ": data holds " +
                                         std::to_string(ta.ElementLength()) + " elements, shape needs " +
                                         std::to_string(numel));
  auto* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return MakeView(base, shape, dt, vp::Device::kCPU);
}

}  // namespace vpaddon
