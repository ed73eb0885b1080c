// The addon's entry point: every op family registers its functions.
#include "addon.h"

namespace vpaddon {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitBackend(env, exports);
  InitLimits(env, exports);
  InitDeviceBuffer(env, exports);
  InitMatmul(env, exports);
  InitMatmulF32Bf16(env, exports);
  InitAttention(env, exports);
  InitLayers(env, exports);
  InitNormAct(env, exports);
  InitPretrainedDevice(env, exports);
  InitVideoLM(env, exports);
  InitPack(env, exports);
  InitGrpo(env, exports);
  InitInfoNce(env, exports);
  InitDist(env, exports);
  InitHostMemory(env, exports);
  // The seam's version: lib/native.ts refuses a binary whose version differs from
  // its ADDON_ABI_VERSION. 2: bindings of more than six values take one object.
  exports.Set("abiVersion", Napi::Number::New(env, 2));
  return exports;
}

}  // namespace vpaddon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return vpaddon::Init(env, exports);
}

NODE_API_MODULE(videoperceiver, InitModule)
