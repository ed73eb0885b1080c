// The core's limits as a frozen `limits` object on the addon, so that the
// TypeScript validation reads the very constants the core enforces instead of
// restating them (lib/addon-types.ts types it as AddonLimits). Built once at load.
#include "addon.h"
#include "vp/attention.h"
#include "vp/tensor.h"
#include "vp/videolm.h"

namespace vpaddon {

void InitLimits(Napi::Env env, Napi::Object exports) {
  using L = vp::VideoLMLimits;
  Napi::Object model = Napi::Object::New(env);
  model.Set("maxImageSize", static_cast<double>(L::kMaxImageSize));
  model.Set("maxFrames", static_cast<double>(L::kMaxFrames));
  model.Set("minWidth", static_cast<double>(L::kMinWidth));
  model.Set("maxWidth", static_cast<double>(L::kMaxWidth));
  model.Set("maxLayers", static_cast<double>(L::kMaxLayers));
  model.Set("maxFfn", static_cast<double>(L::kMaxFfn));
  model.Set("maxMlpRatio", L::kMaxMlpRatio);
  model.Set("minVocab", static_cast<double>(L::kMinVocab));
  model.Set("maxVocab", static_cast<double>(L::kMaxVocab));
  model.Set("maxSeq", static_cast<double>(L::kMaxSeq));
  model.Freeze();
  Napi::Object limits = Napi::Object::New(env);
  limits.Set("maxDims", vp::kMaxDims);
  limits.Set("maxHeadDim", static_cast<double>(vp::kAttentionMaxHeadDim));
  limits.Set("videoLM", model);
  limits.Freeze();
  exports.Set("limits", limits);
}

}  // namespace vpaddon
