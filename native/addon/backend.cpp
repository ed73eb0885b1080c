// backendInfo(), thread and ISA controls.
#include "addon.h"
#include "vp/cpu_features.h"
#include "vp/cuda.h"
#include "vp/thread_pool.h"

namespace vpaddon {
namespace {

Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("isa", vp::isa_name(vp::active_isa()));
  cpu.Set("bestIsa", vp::isa_name(vp::detect_isa()));
  cpu.Set("isaReason", vp::isa_reason());
  cpu.Set("threads", vp::num_threads());
  out.Set("cpu", cpu);
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", vp::cuda::compiled());
  cuda.Set("available", vp::cuda::available());
  cuda.Set("reason", vp::cuda::unavailable_reason());
  cuda.Set("runtimeVersion", vp::cuda::runtime_version());
  if (vp::cuda::available()) {
    vp::cuda::DeviceInfo d = vp::cuda::device_info();
    cuda.Set("device", d.name);
    cuda.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    cuda.Set("memoryBytes", static_cast<double>(d.memory_bytes));
    cuda.Set("deviceCount", d.device_count);
  }
  out.Set("cuda", cuda);
  return out;
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  vp::set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  std::string s = info[0].As<Napi::String>().Utf8Value();
  vp::Isa isa = s == "avx512" ? vp::Isa::kAvx512 : s == "avx2" ? vp::Isa::kAvx2 : vp::Isa::kGeneric;
  return Napi::Boolean::New(info.Env(), vp::set_active_isa(isa));
}

}  // namespace

void InitBackend(Napi::Env env, Napi::Object exports) {
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
}

}  // namespace vpaddon
