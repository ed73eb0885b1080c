// Binding of the built-in VideoLM (vp/videolm.h) for lib/model/videolm.ts.
//
// One JS object (VideoLMNative) owns one native model. The heavy calls
// (forward, backward, step, trainStep, generate, logits) run on the libuv
// thread pool through Napi::AsyncWorker and return Promises; the batch is
// copied into the worker first, so the caller's arrays may change meanwhile.
// A model runs one call at a time: a call while another is running is an
// error (lib/model/videolm.ts queues calls, so users never see it).
// TypeScript validates every argument first; sizes that memory safety depends
// on (video bytes, vector lengths) are checked again here.
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "addon/addon.h"
#include "vp/dist.h"
#include "vp/videolm.h"

namespace vpaddon {
namespace {

Napi::Error ErrorFor(Napi::Env env, const vp::Status& s) {
  switch (s.code()) {
    case vp::StatusCode::kOutOfRange: return Napi::RangeError::New(env, s.message());
    case vp::StatusCode::kInvalidArgument: return Napi::TypeError::New(env, s.message());
    default: return Napi::Error::New(env, s.message());
  }
}

double NumProp(const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("VideoLM: ") + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

template <typename T, napi_typedarray_type kType>
std::vector<T> CopyArr(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kType)
    throw Napi::TypeError::New(v.Env(), std::string("VideoLM: ") + name + " has the wrong typed-array type");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  const T* p = reinterpret_cast<const T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  return std::vector<T>(p, p + ta.ElementLength());
}

vp::VideoLMConfig ConfigFrom(const Napi::Object& o) {
  vp::VideoLMConfig c;
  c.image_size = static_cast<int64_t>(NumProp(o, "imageSize", static_cast<double>(c.image_size)));
  c.patch_size = static_cast<int64_t>(NumProp(o, "patchSize", static_cast<double>(c.patch_size)));
  c.frames = static_cast<int64_t>(NumProp(o, "frames", static_cast<double>(c.frames)));
  c.width = static_cast<int64_t>(NumProp(o, "width", static_cast<double>(c.width)));
  c.layers = static_cast<int64_t>(NumProp(o, "layers", static_cast<double>(c.layers)));
  c.heads = static_cast<int64_t>(NumProp(o, "heads", static_cast<double>(c.heads)));
  c.kv_heads = static_cast<int64_t>(NumProp(o, "kvHeads", static_cast<double>(c.kv_heads)));
  c.mlp_ratio = NumProp(o, "mlpRatio", c.mlp_ratio);
  c.ffn = static_cast<int64_t>(NumProp(o, "ffn", 0));
  c.vocab = static_cast<int64_t>(NumProp(o, "vocab", static_cast<double>(c.vocab)));
  c.max_seq = static_cast<int64_t>(NumProp(o, "maxSeq", static_cast<double>(c.max_seq)));
  Napi::Value t = o.Get("tied");
  if (t.IsBoolean()) c.tied = t.As<Napi::Boolean>().Value();
  c.rope_theta = static_cast<float>(NumProp(o, "ropeTheta", c.rope_theta));
  c.norm_eps = static_cast<float>(NumProp(o, "normEps", c.norm_eps));
  return c;
}

Napi::Object ConfigTo(Napi::Env env, const vp::VideoLMConfig& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("imageSize", static_cast<double>(c.image_size));
  o.Set("patchSize", static_cast<double>(c.patch_size));
  o.Set("frames", static_cast<double>(c.frames));
  o.Set("width", static_cast<double>(c.width));
  o.Set("layers", static_cast<double>(c.layers));
  o.Set("heads", static_cast<double>(c.heads));
  o.Set("kvHeads", static_cast<double>(c.kv_heads));
  o.Set("mlpRatio", c.mlp_ratio);
  o.Set("ffn", static_cast<double>(c.ffn_dim()));
  o.Set("vocab", static_cast<double>(c.vocab));
  o.Set("maxSeq", static_cast<double>(c.max_seq));
  o.Set("tied", c.tied);
  o.Set("ropeTheta", static_cast<double>(c.rope_theta));
  o.Set("normEps", static_cast<double>(c.norm_eps));
  return o;
}

// A batch copied out of JS: { videos, numVideos, text, targets, sequences }.
struct OwnedBatch {
  std::vector<uint8_t> vu8;
  std::vector<float> vf32;
  std::vector<int32_t> text, targets;
  bool has_targets = false;
  std::vector<std::unique_ptr<std::vector<int32_t>>> maps;
  vp::VideoLMBatch batch;
};

std::unique_ptr<OwnedBatch> BatchFrom(const Napi::Value& v, const vp::VideoLMConfig& c) {
  Napi::Env env = v.Env();
  if (!v.IsObject()) throw Napi::TypeError::New(env, "VideoLM: batch must be an object");
  Napi::Object o = v.As<Napi::Object>();
  auto b = std::make_unique<OwnedBatch>();
  const double nv = NumProp(o, "numVideos", 0);
  if (!(nv >= 0 && nv < 1e9)) throw Napi::RangeError::New(env, "VideoLM: numVideos out of range");
  b->batch.num_videos = static_cast<int64_t>(nv);
  const int64_t per = c.frames * c.image_size * c.image_size * 3;
  Napi::Value vids = o.Get("videos");
  if (b->batch.num_videos > 0) {
    if (vids.IsTypedArray() && vids.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
      b->vu8 = CopyArr<uint8_t, napi_uint8_array>(vids, "videos");
      if (static_cast<int64_t>(b->vu8.size()) != b->batch.num_videos * per)
        throw Napi::RangeError::New(env, "VideoLM: videos holds " + std::to_string(b->vu8.size()) + " bytes, expected " +
                                             std::to_string(b->batch.num_videos * per));
      b->batch.videos_u8 = b->vu8.data();
    } else {
      b->vf32 = CopyArr<float, napi_float32_array>(vids, "videos");
      if (static_cast<int64_t>(b->vf32.size()) != b->batch.num_videos * per)
        throw Napi::RangeError::New(env, "VideoLM: videos holds " + std::to_string(b->vf32.size()) +
                                             " floats, expected " + std::to_string(b->batch.num_videos * per));
      b->batch.videos_f32 = b->vf32.data();
    }
  }
  b->text = CopyArr<int32_t, napi_int32_array>(o.Get("text"), "text");
  b->batch.text = b->text.data();
  b->batch.num_text = static_cast<int64_t>(b->text.size());
  Napi::Value tg = o.Get("targets");
  if (!tg.IsUndefined() && !tg.IsNull()) {
    b->targets = CopyArr<int32_t, napi_int32_array>(tg, "targets");
    if (b->targets.size() != b->text.size())
      throw Napi::RangeError::New(env, "VideoLM: targets must have one entry per text token");
    b->batch.targets = b->targets.data();
  }
  Napi::Value sv = o.Get("sequences");
  if (!sv.IsArray()) throw Napi::TypeError::New(env, "VideoLM: sequences must be an array");
  Napi::Array seqs = sv.As<Napi::Array>();
  for (uint32_t i = 0; i < seqs.Length(); ++i) {
    Napi::Value s = seqs.Get(i);
    if (!s.IsArray()) throw Napi::TypeError::New(env, "VideoLM: every sequence must be an array of segments");
    Napi::Array segs = s.As<Napi::Array>();
    std::vector<vp::VideoLMSegment> out;
    for (uint32_t j = 0; j < segs.Length(); ++j) {
      Napi::Value gv = segs.Get(j);
      if (!gv.IsObject()) throw Napi::TypeError::New(env, "VideoLM: a segment must be an object");
      Napi::Object g = gv.As<Napi::Object>();
      vp::VideoLMSegment seg;
      if (g.Has("video")) {
        seg.video = static_cast<int32_t>(NumProp(g, "video", -1));
        if (seg.video < 0) throw Napi::RangeError::New(env, "VideoLM: segment video must be >= 0");
        Napi::Value fm = g.Get("frames");
        if (!fm.IsUndefined() && !fm.IsNull()) {
          b->maps.push_back(std::make_unique<std::vector<int32_t>>(CopyArr<int32_t, napi_int32_array>(fm, "frames")));
          seg.frames = b->maps.back()->data();
          seg.num_frames = static_cast<int64_t>(b->maps.back()->size());
          if (seg.num_frames == 0) throw Napi::RangeError::New(env, "VideoLM: a frame map must not be empty");
        }
        Napi::Value sp = g.Get("sourceFramePosition");
        if (!sp.IsUndefined()) {
          if (!sp.IsBoolean()) throw Napi::TypeError::New(env, "VideoLM: segment sourceFramePosition must be a boolean");
          seg.source_frame_position = sp.As<Napi::Boolean>().Value();
        }
      } else {
        Napi::Value tv = g.Get("text");
        if (!tv.IsArray() || tv.As<Napi::Array>().Length() != 2)
          throw Napi::TypeError::New(env, "VideoLM: a text segment is { text: [start, length] }");
        Napi::Array ta = tv.As<Napi::Array>();
        seg.text_start = static_cast<int64_t>(ta.Get(0u).As<Napi::Number>().DoubleValue());
        seg.text_len = static_cast<int64_t>(ta.Get(1u).As<Napi::Number>().DoubleValue());
      }
      out.push_back(seg);
    }
    b->batch.sequences.push_back(std::move(out));
  }
  return b;
}

Napi::Int32Array I32Out(Napi::Env env, const int32_t* p, size_t n) {
  Napi::Int32Array a = Napi::Int32Array::New(env, n);
  if (n) std::memcpy(a.Data(), p, n * sizeof(int32_t));
  return a;
}
Napi::Float32Array F32Out(Napi::Env env, const float* p, size_t n) {
  Napi::Float32Array a = Napi::Float32Array::New(env, n);
  if (n) std::memcpy(a.Data(), p, n * sizeof(float));
  return a;
}

Napi::Object LayoutTo(Napi::Env env, const vp::VideoLMLayout& l) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("cuSeqlens", I32Out(env, l.cu_seqlens.data(), l.cu_seqlens.size()));
  o.Set("positions", I32Out(env, l.positions.data(), l.positions.size()));
  std::vector<int32_t> ss(l.segment_start.begin(), l.segment_start.end());
  o.Set("segmentStart", I32Out(env, ss.data(), ss.size()));
  o.Set("textRow", I32Out(env, l.text_row.data(), l.text_row.size()));
  o.Set("rows", static_cast<double>(l.rows));
  return o;
}

class VideoLMNative;

// Runs `run` on a worker thread; resolves with `done(env)` or rejects with the Status.
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, VideoLMNative* owner, Napi::Object self, std::function<vp::Status()> run,
      std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "videoperceiver.VideoLM"), owner_(owner), deferred_(Napi::Promise::Deferred::New(env)),
        run_(std::move(run)), done_(std::move(done)) {
    self_ = Napi::Persistent(self);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { status_ = run_(); }
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  VideoLMNative* owner_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference self_;
  std::function<vp::Status()> run_;
  std::function<Napi::Value(Napi::Env)> done_;
  vp::Status status_;
};

class VideoLMNative : public Napi::ObjectWrap<VideoLMNative> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VideoLMNative",
                       {
                           InstanceMethod("config", &VideoLMNative::Config),
                           InstanceMethod("device", &VideoLMNative::Device),
                           InstanceMethod("computeDtype", &VideoLMNative::ComputeDtype),
                           InstanceMethod("setComputeDtype", &VideoLMNative::SetComputeDtype),
                           InstanceMethod("paramInfo", &VideoLMNative::ParamInfo),
                           InstanceMethod("getBuffer", &VideoLMNative::GetBuffer),
                           InstanceMethod("setBuffer", &VideoLMNative::SetBuffer),
                           InstanceMethod("getStep", &VideoLMNative::GetStep),
                           InstanceMethod("setStep", &VideoLMNative::SetStep),
                           InstanceMethod("forward", &VideoLMNative::Forward),
                           InstanceMethod("backward", &VideoLMNative::Backward),
                           InstanceMethod("step", &VideoLMNative::Step),
                           InstanceMethod("trainStep", &VideoLMNative::TrainStep),
                           InstanceMethod("generate", &VideoLMNative::Generate),
                           InstanceMethod("logits", &VideoLMNative::Logits),
                           InstanceMethod("dispose", &VideoLMNative::Dispose),
                           InstanceMethod("distAllreduce", &VideoLMNative::DistAllreduce),
                           InstanceMethod("distBroadcast", &VideoLMNative::DistBroadcast),
                       });
  }

  // new VideoLMNative(config, seed, device = 'cpu')
  explicit VideoLMNative(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VideoLMNative>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "VideoLM: config must be an object");
    const vp::VideoLMConfig c = ConfigFrom(info[0].As<Napi::Object>());
    const double seed = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0.0;
    vp::Device device = vp::Device::kCPU;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      const std::string d = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
      if (d == "cuda") device = vp::Device::kCUDA;
      else if (d != "cpu") throw Napi::TypeError::New(env, "VideoLM: device must be 'cpu' or 'cuda'");
    }
    ThrowIfError(env, vp::VideoLM::create(c, static_cast<uint64_t>(seed), &model_, device));
  }

  bool busy = false;

 private:
  vp::VideoLM& M(Napi::Env env) {
    if (!model_) throw Napi::Error::New(env, "VideoLM: the model was disposed");
    if (busy) throw Napi::Error::New(env, "VideoLM: another call on this model is still running (await it first)");
    return *model_;
  }

  Napi::Value Start(const Napi::CallbackInfo& info, std::function<vp::Status()> run,
                    std::function<Napi::Value(Napi::Env)> done) {
    Job* j = new Job(info.Env(), this, info.This().As<Napi::Object>(), std::move(run), std::move(done));
    busy = true;
    Napi::Promise p = j->Promise();
    j->Queue();
    return p;
  }

  Napi::Value Config(const Napi::CallbackInfo& info) { return ConfigTo(info.Env(), M(info.Env()).config()); }

  Napi::Value ParamInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto& ps = M(env).params();
    Napi::Array a = Napi::Array::New(env, ps.size());
    for (size_t i = 0; i < ps.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", ps[i].name);
      Napi::Array sh = Napi::Array::New(env, ps[i].shape.size());
      for (size_t k = 0; k < ps[i].shape.size(); ++k) sh.Set(static_cast<uint32_t>(k), static_cast<double>(ps[i].shape[k]));
      o.Set("shape", sh);
      o.Set("offset", static_cast<double>(ps[i].offset));
      o.Set("numel", static_cast<double>(ps[i].numel));
      o.Set("decay", ps[i].decay);
      a.Set(static_cast<uint32_t>(i), o);
    }
    return a;
  }

  static vp::VideoLMBuffer Which(Napi::Env env, const Napi::Value& v) {
    const std::string w = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    if (w == "params") return vp::VideoLMBuffer::kParams;
    if (w == "grads") return vp::VideoLMBuffer::kGrads;
    if (w == "m") return vp::VideoLMBuffer::kAdamM;
    if (w == "v") return vp::VideoLMBuffer::kAdamV;
    throw Napi::TypeError::New(env, "VideoLM: buffer must be 'params', 'grads', 'm' or 'v'");
  }

  // getBuffer(which) → Float32Array copy (from host or device memory)
  Napi::Value GetBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vp::VideoLM& m = M(env);
    const vp::VideoLMBuffer which = Which(env, info[0]);
    Napi::Float32Array a = Napi::Float32Array::New(env, static_cast<size_t>(m.num_params()));
    ThrowIfError(env, m.get_buffer(which, a.Data()));
    return a;
  }
  // setBuffer(which, Float32Array)
  Napi::Value SetBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vp::VideoLM& m = M(env);
    const vp::VideoLMBuffer which = Which(env, info[0]);
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(env, "VideoLM.setBuffer: expected a Float32Array");
    Napi::Float32Array a = info[1].As<Napi::Float32Array>();
    if (static_cast<int64_t>(a.ElementLength()) != m.num_params())
      throw Napi::RangeError::New(env, "VideoLM.setBuffer: holds " + std::to_string(a.ElementLength()) +
                                           " floats, the model has " + std::to_string(m.num_params()));
    ThrowIfError(env, m.set_buffer(which, a.Data()));
    return env.Undefined();
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), vp::device_name(M(info.Env()).device()));
  }
  // computeDtype() → 'float32' | 'bfloat16'; setComputeDtype('float32' | 'bfloat16') (validated in lib/model).
  Napi::Value ComputeDtype(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), M(info.Env()).compute_dtype() == vp::DType::kBFloat16 ? "bfloat16" : "float32");
  }
  Napi::Value SetComputeDtype(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string d = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    const vp::DType dt = d == "bfloat16" ? vp::DType::kBFloat16 : d == "float32" ? vp::DType::kFloat32 : vp::DType::kInt32;
    ThrowIfError(env, M(env).set_compute_dtype(dt));
    return env.Undefined();
  }
  Napi::Value GetStep(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(M(info.Env()).step())); }
  Napi::Value SetStep(const Napi::CallbackInfo& info) {
    M(info.Env()).set_step(static_cast<int64_t>(info[0].As<Napi::Number>().DoubleValue()));
    return info.Env().Undefined();
  }

  static vp::VideoLMForwardOptions FwdOpts(const Napi::Value& v, std::vector<int32_t>* rows) {
    vp::VideoLMForwardOptions o;
    if (!v.IsObject()) return o;
    Napi::Object ob = v.As<Napi::Object>();
    o.tap_layer = static_cast<int64_t>(NumProp(ob, "tapLayer", -1));
    Napi::Value r = ob.Get("tapRows");
    if (!r.IsUndefined() && !r.IsNull()) *rows = CopyArr<int32_t, napi_int32_array>(r, "tapRows");
    o.want_logprobs = ob.Get("logprobs").IsBoolean() && ob.Get("logprobs").As<Napi::Boolean>().Value();
    o.for_backward = !(ob.Get("forBackward").IsBoolean() && !ob.Get("forBackward").As<Napi::Boolean>().Value());
    return o;
  }

  static Napi::Value FwdResult(Napi::Env env, const vp::VideoLMForwardResult& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("loss", r.loss);
    o.Set("count", static_cast<double>(r.count));
    o.Set("tap", F32Out(env, r.tap.data(), r.tap.size()));
    o.Set("tokenLogprobs", F32Out(env, r.token_logprobs.data(), r.token_logprobs.size()));
    o.Set("layout", LayoutTo(env, r.layout));
    return o;
  }

  // forward(batch, opts) → Promise<{loss, count, tap, tokenLogprobs, layout}>
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    vp::VideoLM& m = M(info.Env());
    std::shared_ptr<OwnedBatch> b = BatchFrom(info[0], m.config());
    auto rows = std::make_shared<std::vector<int32_t>>();
    vp::VideoLMForwardOptions o = FwdOpts(info[1], rows.get());
    auto res = std::make_shared<vp::VideoLMForwardResult>();
    return Start(
        info,
        [&m, b, rows, o, res]() mutable {
          o.tap_rows = rows->data();
          o.num_tap = static_cast<int64_t>(rows->size());
          return m.forward(b->batch, o, res.get());
        },
        [this, res, rows, b](Napi::Env env) {
          tap_rows_ = rows->size();
          num_text_ = b->batch.num_text;
          return FwdResult(env, *res);
        });
  }

  // backward(gradLoss, dtap | null, dlogprobs | null, accumulate) → Promise<void>
  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vp::VideoLM& m = M(env);
    const float gl = static_cast<float>(info[0].As<Napi::Number>().DoubleValue());
    auto dtap = std::make_shared<std::vector<float>>();
    auto dlp = std::make_shared<std::vector<float>>();
    const bool has_tap = info[1].IsTypedArray(), has_lp = info[2].IsTypedArray();
    if (has_tap) *dtap = CopyArr<float, napi_float32_array>(info[1], "dTap");
    if (has_lp) *dlp = CopyArr<float, napi_float32_array>(info[2], "dLogprobs");
    const bool acc = info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
    // Sizes the core reads: num_tap * d and num_text floats (from the last forward).
    const int64_t want_tap = static_cast<int64_t>(tap_rows_) * m.config().width;
    if (has_tap && static_cast<int64_t>(dtap->size()) != want_tap)
      throw Napi::RangeError::New(env, "VideoLM.backward: dTap holds " + std::to_string(dtap->size()) +
                                           " floats, the last forward tapped " + std::to_string(want_tap));
    if (has_lp && static_cast<int64_t>(dlp->size()) != num_text_)
      throw Napi::RangeError::New(env, "VideoLM.backward: dLogprobs holds " + std::to_string(dlp->size()) +
                                           " floats, the last forward had " + std::to_string(num_text_) + " text tokens");
    return Start(
        info,
        [&m, gl, dtap, dlp, has_tap, has_lp, acc]() {
          return m.backward(gl, has_tap ? dtap->data() : nullptr, has_lp ? dlp->data() : nullptr, acc);
        },
        [](Napi::Env e) { return e.Undefined(); });
  }

  static vp::VideoLMStepOptions StepOpts(const Napi::Value& v) {
    vp::VideoLMStepOptions s;
    if (!v.IsObject()) return s;
    Napi::Object o = v.As<Napi::Object>();
    s.lr = NumProp(o, "lr", s.lr);
    s.min_lr = NumProp(o, "minLr", s.min_lr);
    s.warmup_steps = static_cast<int64_t>(NumProp(o, "warmupSteps", 0));
    s.total_steps = static_cast<int64_t>(NumProp(o, "totalSteps", 0));
    s.beta1 = static_cast<float>(NumProp(o, "beta1", s.beta1));
    s.beta2 = static_cast<float>(NumProp(o, "beta2", s.beta2));
    s.eps = static_cast<float>(NumProp(o, "eps", s.eps));
    s.weight_decay = static_cast<float>(NumProp(o, "weightDecay", s.weight_decay));
    s.max_grad_norm = NumProp(o, "maxGradNorm", s.max_grad_norm);
    s.grad_scale = NumProp(o, "gradScale", s.grad_scale);
    return s;
  }

  static Napi::Value StepResult(Napi::Env env, const vp::VideoLMStepResult& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("gradNorm", r.grad_norm);
    o.Set("lr", r.lr);
    o.Set("step", static_cast<double>(r.step));
    return o;
  }

  // step(opts) → Promise<{gradNorm, lr, step}>
  Napi::Value Step(const Napi::CallbackInfo& info) {
    vp::VideoLM& m = M(info.Env());
    const vp::VideoLMStepOptions s = StepOpts(info[0]);
    auto res = std::make_shared<vp::VideoLMStepResult>();
    return Start(
        info, [&m, s, res]() { return m.optimizer_step(s, res.get()); },
        [res](Napi::Env env) { return StepResult(env, *res); });
  }

  // trainStep(batches[], stepOpts) → Promise<{loss, count, gradNorm, lr, step}>:
  // forward + backward over each micro-batch (gradients accumulated, each
  // micro-batch's mean loss weighted 1/k), then one AdamW step.
  Napi::Value TrainStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vp::VideoLM& m = M(env);
    if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0)
      throw Napi::TypeError::New(env, "VideoLM.trainStep: expected a non-empty array of batches");
    Napi::Array arr = info[0].As<Napi::Array>();
    auto batches = std::make_shared<std::vector<std::unique_ptr<OwnedBatch>>>();
    for (uint32_t i = 0; i < arr.Length(); ++i) batches->push_back(BatchFrom(arr.Get(i), m.config()));
    const vp::VideoLMStepOptions s = StepOpts(info[1]);
    auto res = std::make_shared<vp::VideoLMStepResult>();
    auto loss = std::make_shared<double>(0.0);
    auto count = std::make_shared<int64_t>(0);
    return Start(
        info,
        [&m, batches, s, res, loss, count]() {
          const float k = static_cast<float>(batches->size());
          for (size_t i = 0; i < batches->size(); ++i) {
            vp::VideoLMForwardResult r;
            VP_RETURN_IF_ERROR(m.forward((*batches)[i]->batch, vp::VideoLMForwardOptions(), &r));
            *loss += r.loss / k;
            *count += r.count;
            VP_RETURN_IF_ERROR(m.backward(1.0f / k, nullptr, nullptr, i > 0));
          }
          return m.optimizer_step(s, res.get());
        },
        [res, loss, count](Napi::Env env) {
          Napi::Object o = StepResult(env, *res).As<Napi::Object>();
          o.Set("loss", *loss);
          o.Set("count", static_cast<double>(*count));
          return o;
        });
  }

  // generate(batch, {maxTokens, temperature, topP, seed, eosId}) → Promise<Int32Array[]>
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vp::VideoLM& m = M(env);
    std::shared_ptr<OwnedBatch> b = BatchFrom(info[0], m.config());
    vp::VideoLMGenerateOptions g;
    if (info[1].IsObject()) {
      Napi::Object o = info[1].As<Napi::Object>();
      g.max_tokens = static_cast<int64_t>(NumProp(o, "maxTokens", static_cast<double>(g.max_tokens)));
      g.temperature = static_cast<float>(NumProp(o, "temperature", g.temperature));
      g.top_p = static_cast<float>(NumProp(o, "topP", g.top_p));
      g.seed = static_cast<uint64_t>(NumProp(o, "seed", 0));
      g.eos_id = static_cast<int32_t>(NumProp(o, "eosId", -1));
      Napi::Value st = o.Get("streams");
      if (!st.IsUndefined() && !st.IsNull()) {
        for (int32_t x : CopyArr<int32_t, napi_int32_array>(st, "streams")) {
          if (x < 0) throw Napi::RangeError::New(env, "VideoLM.generateBatch: streams must be >= 0");
          g.streams.push_back(static_cast<uint64_t>(x));
        }
      }
      // onToken(sequence, token): called on the JS thread as tokens are sampled (streaming), then
      // once with (-1, -1) after the last one. The thread-safe function is released when
      // generation ends; queued calls are still delivered.
      if (o.Has("onToken") && o.Get("onToken").IsFunction()) {
        auto tsfn = std::make_shared<Napi::ThreadSafeFunction>(
            Napi::ThreadSafeFunction::New(env, o.Get("onToken").As<Napi::Function>(), "videoperceiver.onToken", 0, 1));
        g.on_token = [tsfn](int64_t seq, int32_t token) {
          tsfn->NonBlockingCall([seq, token](Napi::Env e, Napi::Function cb) {
            cb.Call({Napi::Number::New(e, static_cast<double>(seq)), Napi::Number::New(e, token)});
          });
        };
        auto out = std::make_shared<std::vector<std::vector<int32_t>>>();
        return Start(
            info,
            [&m, b, g, out, tsfn]() {
              vp::Status s = m.generate(b->batch, g, out.get());
              // (-1, -1) marks the end: calls arrive in order, so JS knows every token was delivered.
              tsfn->NonBlockingCall([](Napi::Env e, Napi::Function cb) { cb.Call({Napi::Number::New(e, -1), Napi::Number::New(e, -1)}); });
              tsfn->Release();
              return s;
            },
            [out](Napi::Env e) { return TokenLists(e, *out); });
      }
    }
    auto out = std::make_shared<std::vector<std::vector<int32_t>>>();
    return Start(
        info, [&m, b, g, out]() { return m.generate(b->batch, g, out.get()); },
        [out](Napi::Env e) { return TokenLists(e, *out); });
  }

  static Napi::Value TokenLists(Napi::Env e, const std::vector<std::vector<int32_t>>& lists) {
    Napi::Array a = Napi::Array::New(e, lists.size());
    for (size_t i = 0; i < lists.size(); ++i) a.Set(static_cast<uint32_t>(i), I32Out(e, lists[i].data(), lists[i].size()));
    return a;
  }

  // logits(batch) → Promise<{logits: Float32Array [rows * vocab], layout}>
  Napi::Value Logits(const Napi::CallbackInfo& info) {
    vp::VideoLM& m = M(info.Env());
    std::shared_ptr<OwnedBatch> b = BatchFrom(info[0], m.config());
    auto lg = std::make_shared<std::vector<float>>();
    auto lay = std::make_shared<vp::VideoLMLayout>();
    return Start(
        info, [&m, b, lg, lay]() { return m.logits_all(b->batch, lg.get(), lay.get()); },
        [lg, lay](Napi::Env e) {
          Napi::Object o = Napi::Object::New(e);
          o.Set("logits", F32Out(e, lg->data(), lg->size()));
          o.Set("layout", LayoutTo(e, *lay));
          return o;
        });
  }

  // distAllreduce(which) → Promise<void>: sums the flat buffer over the ranks
  // in place, on the model's device (vp/dist.h), queued like any model call.
  Napi::Value DistAllreduce(const Napi::CallbackInfo& info) {
    vp::VideoLM& m = M(info.Env());
    const vp::VideoLMBuffer which = Which(info.Env(), info[0]);
    return Start(
        info,
        [&m, which]() {
          float* p = nullptr;
          VP_RETURN_IF_ERROR(m.buffer_data(which, &p));
          return vp::dist::allreduce_sum(p, m.num_params(), vp::dist::Elem::kFloat32, m.device() == vp::Device::kCUDA);
        },
        [](Napi::Env e) { return e.Undefined(); });
  }
  // distBroadcast(which, root) → Promise<void>: the flat buffer from rank `root` to every rank.
  Napi::Value DistBroadcast(const Napi::CallbackInfo& info) {
    vp::VideoLM& m = M(info.Env());
    const vp::VideoLMBuffer which = Which(info.Env(), info[0]);
    const int root = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
    return Start(
        info,
        [&m, which, root]() {
          float* p = nullptr;
          VP_RETURN_IF_ERROR(m.buffer_data(which, &p));
          return vp::dist::broadcast(p, m.num_params() * static_cast<int64_t>(sizeof(float)), root,
                                     m.device() == vp::Device::kCUDA);
        },
        [](Napi::Env e) { return e.Undefined(); });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (busy) throw Napi::Error::New(info.Env(), "VideoLM.dispose: a call is still running (await it first)");
    model_.reset();
    return info.Env().Undefined();
  }

 public:
  // What the last successful forward() had (for backward's size checks).
  size_t tap_rows_ = 0;
  int64_t num_text_ = 0;
  std::unique_ptr<vp::VideoLM> model_;
  friend class Job;
};

void Job::OnOK() {
  owner_->busy = false;
  Napi::Env env = Env();
  if (!status_.ok()) {
    deferred_.Reject(ErrorFor(env, status_).Value());
    return;
  }
  try {
    deferred_.Resolve(done_(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void Job::OnError(const Napi::Error& e) {
  owner_->busy = false;
  deferred_.Reject(e.Value());
}

}  // namespace

void InitVideoLM(Napi::Env env, Napi::Object exports) {
  exports.Set("VideoLMNative", VideoLMNative::Define(env));
}

}  // namespace vpaddon
