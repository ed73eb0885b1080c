// Token packing in the binding:
//   packPlan(table: Int32Array [S*6], numSequences, frameMap: Int32Array, dims: [V, F, P, T])
//     -> { source, positions, segment, cuSeqlens } (Int32Arrays)
//   packTokens({ video|null, videoShape, text|null, textShape, source: Int32Array, out, outShape, dtype })
//   packTokensBackward({ dTokens, dTokensShape, source: Int32Array, dVideo|null, videoShape,
//                        dText|null, textShape, dtype })
// Tensors are typed arrays (CPU) or CUDA handles; outputs are allocated by the
// TypeScript side. null stands for an absent source with zero rows. The core
// validates every index again (memory safety never depends on the caller).
#include <string>
#include <vector>

#include "addon/addon.h"
#include "vp/pack.h"

namespace vpaddon {
namespace {

struct Ints {
  const int32_t* data = nullptr;
  int64_t length = 0;
};

Ints Int32ArrayArg(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, std::string(name) + ": expected an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  Ints r;
  r.data = a.Data();
  r.length = static_cast<int64_t>(a.ElementLength());
  return r;
}

int64_t IntArg(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(name) + ": expected a number");
  double x = v.As<Napi::Number>().DoubleValue();
  if (!(x >= 0 && x <= 2147483647.0) || x != static_cast<double>(static_cast<int64_t>(x)))
    throw Napi::RangeError::New(env, std::string(name) + ": expected an integer in [0, 2^31-1]");
  return static_cast<int64_t>(x);
}

// A view over a tensor argument, or an empty one (data null) when it is null.
vp::TensorView TensorArg(const Napi::Value& v, const std::vector<int64_t>& shape, bool cuda, vp::DType dt,
                         const char* name) {
  if (v.IsNull() || v.IsUndefined()) {
    int64_t numel = 1;
    for (int64_t s : shape) numel *= s;
    if (numel != 0)
      throw Napi::TypeError::New(v.Env(), std::string(name) + ": missing, but its shape is not empty");
    vp::TensorView t;
    t.dtype = dt;
    t.device = cuda ? vp::Device::kCUDA : vp::Device::kCPU;
    t.ndim = static_cast<int>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
    return t;
  }
  if (cuda != v.IsExternal())
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": tensors are on different devices");
  return cuda ? CudaView(v, shape, dt, name) : CpuView(v, shape, name);
}

Napi::Value PackPlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Ints table = Int32ArrayArg(info[0], "table");
  const int64_t num_sequences = IntArg(info[1], "numSequences");
  Ints frame_map = Int32ArrayArg(info[2], "frameMap");
  auto dims = ShapeArg(info[3], "dims");
  if (dims.size() != 4) throw Napi::TypeError::New(env, "packPlan: dims must be [V, F, P, T]");
  if (table.length % vp::kPackTableColumns != 0)
    throw Napi::RangeError::New(env, "packPlan: the segment table's length must be a multiple of 6");
  vp::PackSources src;
  src.num_videos = dims[0];
  src.frames = dims[1];
  src.tokens_per_frame = dims[2];
  src.num_text = dims[3];
  std::vector<vp::PackSegment> segs;
  const int64_t nsegs = table.length / vp::kPackTableColumns;
  ThrowIfError(env, vp::pack_segments_from_table(table.data, nsegs, &segs));
  int64_t total = 0;
  ThrowIfError(env, vp::pack_count(src, segs.data(), nsegs, num_sequences, frame_map.data, frame_map.length, &total));
  Napi::Int32Array source = Napi::Int32Array::New(env, static_cast<size_t>(total));
  Napi::Int32Array positions = Napi::Int32Array::New(env, static_cast<size_t>(total));
  Napi::Int32Array segment = Napi::Int32Array::New(env, static_cast<size_t>(total));
  Napi::Int32Array cu = Napi::Int32Array::New(env, static_cast<size_t>(num_sequences + 1));
  ThrowIfError(env, vp::pack_plan(src, segs.data(), nsegs, num_sequences, frame_map.data, frame_map.length, total,
                                  source.Data(), positions.Data(), segment.Data(), cu.Data()));
  Napi::Object out = Napi::Object::New(env);
  out.Set("source", source);
  out.Set("positions", positions);
  out.Set("segment", segment);
  out.Set("cuSeqlens", cu);
  return out;
}

Napi::Value PackTokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "packTokens");
  const bool cuda = a.Get("out").IsExternal();
  const vp::DType dt = DTypeArg(a.Get("dtype"), "dtype");
  vp::TensorView video = TensorArg(a.Get("video"), ShapeArg(a.Get("videoShape"), "video"), cuda, dt, "video");
  vp::TensorView text = TensorArg(a.Get("text"), ShapeArg(a.Get("textShape"), "text"), cuda, dt, "text");
  Ints source = Int32ArrayArg(a.Get("source"), "source");
  vp::TensorView out = TensorArg(a.Get("out"), ShapeArg(a.Get("outShape"), "out"), cuda, dt, "out");
  ThrowIfError(env, vp::pack_tokens(video, text, source.data, source.length, out));
  return env.Undefined();
}

Napi::Value PackTokensBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Object a = ArgsObject(info, "packTokensBackward");
  const bool cuda = a.Get("dTokens").IsExternal();
  const vp::DType dt = DTypeArg(a.Get("dtype"), "dtype");
  vp::TensorView d_tokens = TensorArg(a.Get("dTokens"), ShapeArg(a.Get("dTokensShape"), "dTokens"), cuda, dt, "dTokens");
  Ints source = Int32ArrayArg(a.Get("source"), "source");
  vp::TensorView d_video = TensorArg(a.Get("dVideo"), ShapeArg(a.Get("videoShape"), "dVideo"), cuda, dt, "dVideo");
  vp::TensorView d_text = TensorArg(a.Get("dText"), ShapeArg(a.Get("textShape"), "dText"), cuda, dt, "dText");
  ThrowIfError(env, vp::pack_tokens_backward(d_tokens, source.data, source.length, d_video, d_text));
  return env.Undefined();
}

}  // namespace

void InitPack(Napi::Env env, Napi::Object exports) {
  exports.Set("packPlan", Napi::Function::New(env, PackPlan));
  exports.Set("packTokens", Napi::Function::New(env, PackTokens));
  exports.Set("packTokensBackward", Napi::Function::New(env, PackTokensBackward));
}

}  // namespace vpaddon
