// Bindings of the VideoLM configuration, parameter layout and initialization
// (vp/model.h) for lib/model/config.ts. The config arrives as a plain object
// with the TypeScript field names; the core validates it again.
#include <cmath>
#include <string>
#include <type_traits>

#include "addon.h"
#include "vp/model.h"

namespace vpaddon {
namespace {

vp::ModelConfig ConfigArg(const Napi::Value& v) {
  Napi::Env env = v.Env();
  if (!v.IsObject()) throw Napi::TypeError::New(env, "config: expected an object");
  Napi::Object o = v.As<Napi::Object>();
  vp::ModelConfig c;
  auto num = [&](const char* key, auto& field) {
    Napi::Value x = o.Get(key);
    if (x.IsUndefined()) return;
    if (!x.IsNumber()) throw Napi::TypeError::New(env, std::string("config.") + key + ": expected a number");
    const double d = x.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || std::fabs(d) > 9.0e15)
      throw Napi::RangeError::New(env, std::string("config.") + key + ": expected a finite number");
    field = static_cast<std::remove_reference_t<decltype(field)>>(d);
  };
  num("imageSize", c.image_size);
  num("patchSize", c.patch_size);
  num("maxFrames", c.max_frames);
  num("dim", c.dim);
  num("layers", c.layers);
  num("heads", c.heads);
  num("kvHeads", c.kv_heads);
  num("mlpHidden", c.mlp_hidden);
  num("vocab", c.vocab);
  num("maxSeq", c.max_seq);
  num("normEps", c.norm_eps);
  num("ropeTheta", c.rope_theta);
  num("initStd", c.init_std);
  Napi::Value tie = o.Get("tieEmbeddings");
  if (!tie.IsUndefined()) c.tie_embeddings = tie.ToBoolean();
  return c;
}

// modelLayout(config) → { total, params: [{ name, shape, offset, numel, decay }] }
Napi::Value ModelLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  vp::ParamLayout l;
  ThrowIfError(env, vp::param_layout(ConfigArg(info[0]), &l));
  Napi::Array params = Napi::Array::New(env, l.params.size());
  for (size_t i = 0; i < l.params.size(); ++i) {
    const auto& p = l.params[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", p.name);
    Napi::Array shape = Napi::Array::New(env, p.shape.size());
    for (size_t j = 0; j < p.shape.size(); ++j) shape.Set(static_cast<uint32_t>(j), Napi::Number::New(env, static_cast<double>(p.shape[j])));
    o.Set("shape", shape);
    o.Set("offset", Napi::Number::New(env, static_cast<double>(p.offset)));
    o.Set("numel", Napi::Number::New(env, static_cast<double>(p.numel)));
    o.Set("decay", Napi::Boolean::New(env, p.decay));
    params.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("total", Napi::Number::New(env, static_cast<double>(l.total)));
  out.Set("params", params);
  return out;
}

// initParams(config, seed: bigint, out: Float32Array(total))
Napi::Value InitParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  vp::ParamLayout l;
  ThrowIfError(env, vp::param_layout(ConfigArg(info[0]), &l));
  if (!info[1].IsBigInt()) throw Napi::TypeError::New(env, "seed: expected a bigint");
  bool lossless = false;
  uint64_t seed = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw Napi::RangeError::New(env, "seed: must fit in 64 unsigned bits");
  vp::TensorView out = CpuView(info[2], {l.total}, "out");
  if (out.dtype != vp::DType::kFloat32) throw Napi::TypeError::New(env, "out: expected a Float32Array");
  ThrowIfError(env, vp::init_params(l, seed, out.as<float>()));
  return env.Undefined();
}

// modelPreset(name) → the preset's config object (the TypeScript field names).
Napi::Value ModelPreset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  vp::ModelConfig c;
  ThrowIfError(env, vp::model_preset(info[0].ToString().Utf8Value(), &c));
  Napi::Object o = Napi::Object::New(env);
  auto set = [&](const char* k, double v) { o.Set(k, Napi::Number::New(env, v)); };
  set("imageSize", static_cast<double>(c.image_size));
  set("patchSize", static_cast<double>(c.patch_size));
  set("maxFrames", static_cast<double>(c.max_frames));
  set("dim", static_cast<double>(c.dim));
  set("layers", static_cast<double>(c.layers));
  set("heads", static_cast<double>(c.heads));
  set("kvHeads", static_cast<double>(c.kv_heads));
  set("mlpHidden", static_cast<double>(c.mlp_hidden));
  set("vocab", static_cast<double>(c.vocab));
  set("maxSeq", static_cast<double>(c.max_seq));
  o.Set("tieEmbeddings", Napi::Boolean::New(env, c.tie_embeddings));
  set("normEps", c.norm_eps);
  set("ropeTheta", c.rope_theta);
  set("initStd", c.init_std);
  return o;
}

}  // namespace

void InitModel(Napi::Env env, Napi::Object exports) {
  exports.Set("modelPreset", Napi::Function::New(env, ModelPreset));
  exports.Set("modelLayout", Napi::Function::New(env, ModelLayout));
  exports.Set("initParams", Napi::Function::New(env, InitParams));
}

}  // namespace vpaddon
