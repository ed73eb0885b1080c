// VideoLM configuration, presets, parameter layout and seeded initialization (vp/model.h).
#include <cmath>
#include <cstring>
#include <string>

#include "vp/model.h"
#include "vp/rng.h"
#include "vp/thread_pool.h"

namespace vp {

Status model_preset(const std::string& name, ModelConfig* out) {
  if (!out) return Status::Invalid("model_preset: out is null");
  ModelConfig c;
  if (name == "tiny") {
    // defaults
  } else if (name == "small") {
    c.image_size = 64;
    c.patch_size = 8;
    c.max_frames = 16;
    c.dim = 512;
    c.layers = 8;
    c.heads = 8;
    c.kv_heads = 4;
    c.mlp_hidden = 1408;
    c.vocab = 8192;
    c.max_seq = 2048;
  } else {
    return Status::Invalid("model_preset: unknown preset '" + name + "' (expected 'tiny' or 'small')");
  }
  *out = c;
  return Status::Ok();
}

Status validate_config(const ModelConfig& c) {
  auto pos = [](int64_t v, const char* n) -> Status {
    if (v <= 0) return Status::Invalid(std::string("model config: ") + n + " must be > 0, got " + std::to_string(v));
    if (v > (int64_t{1} << 24))
      return Status::Invalid(std::string("model config: ") + n + " must be <= 2^24, got " + std::to_string(v));
    return Status::Ok();
  };
  VP_RETURN_IF_ERROR(pos(c.image_size, "image_size"));
  VP_RETURN_IF_ERROR(pos(c.patch_size, "patch_size"));
  VP_RETURN_IF_ERROR(pos(c.max_frames, "max_frames"));
  VP_RETURN_IF_ERROR(pos(c.dim, "dim"));
  VP_RETURN_IF_ERROR(pos(c.layers, "layers"));
  VP_RETURN_IF_ERROR(pos(c.heads, "heads"));
  VP_RETURN_IF_ERROR(pos(c.kv_heads, "kv_heads"));
  VP_RETURN_IF_ERROR(pos(c.mlp_hidden, "mlp_hidden"));
  VP_RETURN_IF_ERROR(pos(c.vocab, "vocab"));
  VP_RETURN_IF_ERROR(pos(c.max_seq, "max_seq"));
  if (c.image_size % c.patch_size != 0)
    return Status::Invalid("model config: image_size " + std::to_string(c.image_size) +
                           " must be a multiple of patch_size " + std::to_string(c.patch_size));
  if (c.dim % c.heads != 0)
    return Status::Invalid("model config: dim " + std::to_string(c.dim) + " must be a multiple of heads " +
                           std::to_string(c.heads));
  const int64_t hd = c.dim / c.heads;
  if (hd % 2 != 0 || hd > 256)
    return Status::Invalid("model config: head_dim = dim / heads = " + std::to_string(hd) +
                           " must be even and <= 256");
  if (c.heads % c.kv_heads != 0)
    return Status::Invalid("model config: heads " + std::to_string(c.heads) + " must be a multiple of kv_heads " +
                           std::to_string(c.kv_heads));
  if (c.vocab > INT32_MAX) return Status::Invalid("model config: vocab must fit in int32");
  if (!(c.norm_eps > 0.0f) || !std::isfinite(c.norm_eps)) return Status::Invalid("model config: norm_eps must be > 0");
  if (!(c.rope_theta > 1.0f) || !std::isfinite(c.rope_theta)) return Status::Invalid("model config: rope_theta must be > 1");
  if (!(c.init_std >= 0.0f) || !std::isfinite(c.init_std)) return Status::Invalid("model config: init_std must be >= 0");
  return Status::Ok();
}

const ParamInfo* ParamLayout::find(const std::string& name) const {
  for (const auto& p : params)
    if (p.name == name) return &p;
  return nullptr;
}

Status param_layout(const ModelConfig& c, ParamLayout* out) {
  if (!out) return Status::Invalid("param_layout: out is null");
  VP_RETURN_IF_ERROR(validate_config(c));
  ParamLayout l;
  const float resid_std = c.init_std / std::sqrt(2.0f * static_cast<float>(c.layers));
  auto add = [&](std::string name, std::vector<int64_t> shape, ParamInit init, float sd, bool decay) {
    ParamInfo p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.numel = 1;
    for (int64_t s : p.shape) p.numel *= s;
    p.offset = l.total;
    p.init = init;
    p.std = sd;
    p.decay = decay;
    l.total += (p.numel + 15) / 16 * 16;
    l.params.push_back(std::move(p));
  };
  const int64_t d = c.dim, hd = c.head_dim(), F = c.mlp_hidden;
  add("vision.patch_embed.weight", {d, c.patch_features()}, ParamInit::kNormal, c.init_std, true);
  add("vision.patch_embed.bias", {d}, ParamInit::kZeros, 0, false);
  add("vision.frame_pos", {c.max_frames, d}, ParamInit::kNormal, c.init_std, false);
  add("vision.patch_pos", {c.patches_per_frame(), d}, ParamInit::kNormal, c.init_std, false);
  add("text.embed.weight", {c.vocab, d}, ParamInit::kNormal, c.init_std, false);
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    add(p + "attn_norm.gain", {d}, ParamInit::kOnes, 0, false);
    add(p + "attn.wq", {c.heads * hd, d}, ParamInit::kNormal, c.init_std, true);
    add(p + "attn.wk", {c.kv_heads * hd, d}, ParamInit::kNormal, c.init_std, true);
    add(p + "attn.wv", {c.kv_heads * hd, d}, ParamInit::kNormal, c.init_std, true);
    add(p + "attn.wo", {d, c.heads * hd}, ParamInit::kNormal, resid_std, true);
    add(p + "mlp_norm.gain", {d}, ParamInit::kOnes, 0, false);
    add(p + "mlp.w_gate_up", {2 * F, d}, ParamInit::kNormal, c.init_std, true);
    add(p + "mlp.w_down", {d, F}, ParamInit::kNormal, resid_std, true);
  }
  add("final_norm.gain", {d}, ParamInit::kOnes, 0, false);
  if (!c.tie_embeddings) add("lm_head.weight", {c.vocab, d}, ParamInit::kNormal, c.init_std, true);
  if (l.total > INT32_MAX)
    return Status::Invalid("model config: " + std::to_string(l.total) + " parameters is more than this build supports (2^31 - 1)");
  *out = std::move(l);
  return Status::Ok();
}

Status init_params(const ParamLayout& layout, uint64_t seed, float* buffer) {
  if (!buffer && layout.total > 0) return Status::Invalid("init_params: buffer is null");
  std::memset(buffer, 0, static_cast<size_t>(layout.total) * sizeof(float));
  for (size_t i = 0; i < layout.params.size(); ++i) {
    const ParamInfo& p = layout.params[i];
    float* dst = buffer + p.offset;
    switch (p.init) {
      case ParamInit::kNormal: VP_RETURN_IF_ERROR(rng_normal(seed, i, 0.0f, p.std, dst, p.numel)); break;
      case ParamInit::kOnes:
        for (int64_t j = 0; j < p.numel; ++j) dst[j] = 1.0f;
        break;
      case ParamInit::kZeros: break;
    }
  }
  return Status::Ok();
}

}  // namespace vp
