// vp/model.h — the VideoLM's configuration, parameter layout and initialization
// (docs/model.md). The forward/backward assembly (part 2 of issue 7) builds on
// these: every parameter lives at a fixed offset of ONE flat float32 buffer
// (gradients, AdamW m and v use the same layout), named as in model.safetensors.
//
// Parameters, in layout order (P = (image/patch)^2 patches per frame, hd = dim/heads):
//   vision.patch_embed.weight [dim, patch*patch*3]   vision.patch_embed.bias [dim]
//   vision.frame_pos [max_frames, dim]               vision.patch_pos [P, dim]
//   text.embed.weight [vocab, dim]
//   layers.<i>.attn_norm.gain [dim]
//   layers.<i>.attn.wq [heads*hd, dim]  .wk [kv_heads*hd, dim]  .wv [kv_heads*hd, dim]  .wo [dim, heads*hd]
//   layers.<i>.mlp_norm.gain [dim]
//   layers.<i>.mlp.w_gate_up [2*mlp_hidden, dim]  (rows [0, F) gate, [F, 2F) up)
//   layers.<i>.mlp.w_down [dim, mlp_hidden]
//   final_norm.gain [dim]
//   lm_head.weight [vocab, dim]   (only when !tie_embeddings; tied: text.embed.weight)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vp/status.h"

namespace vp {

struct ModelConfig {
  int64_t image_size = 32;   // frames are image_size x image_size x 3
  int64_t patch_size = 8;
  int64_t max_frames = 8;
  int64_t dim = 128;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t mlp_hidden = 352;
  int64_t vocab = 4096;
  int64_t max_seq = 512;
  bool tie_embeddings = true;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  float init_std = 0.02f;

  int64_t head_dim() const { return heads > 0 ? dim / heads : 0; }
  int64_t patches_per_frame() const {
    return patch_size > 0 ? (image_size / patch_size) * (image_size / patch_size) : 0;
  }
  int64_t patch_features() const { return patch_size * patch_size * 3; }
};

// "tiny" (trains in minutes on 2 cores) or "small"; InvalidArgument for other names.
Status model_preset(const std::string& name, ModelConfig* out);

// Checks a configuration: positive sizes, image a multiple of patch, dim a
// multiple of heads with an even head_dim <= 256, heads a multiple of kv_heads,
// finite eps > 0 and theta > 1. Messages name the field.
Status validate_config(const ModelConfig& c);

enum class ParamInit { kNormal, kOnes, kZeros };

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in floats, into the flat buffer
  int64_t numel = 0;
  bool decay = false;  // AdamW weight decay applies (2-D projection matrices only)
  ParamInit init = ParamInit::kZeros;
  float std = 0.0f;    // for kNormal
};

struct ParamLayout {
  std::vector<ParamInfo> params;
  int64_t total = 0;   // floats in the flat buffer
  // nullptr when absent.
  const ParamInfo* find(const std::string& name) const;
};

// The layout of a (validated) configuration. Offsets are multiples of 16 floats
// (64 bytes), so every tensor starts on a cache line; the padding is zero.
Status param_layout(const ModelConfig& c, ParamLayout* out);

// Fills the flat buffer (layout.total floats): normal(0, std) matrices and
// embeddings from Philox stream = the parameter's index, ones for gains, zeros
// for biases and padding. Projections into the residual stream (attn.wo,
// mlp.w_down) get std / sqrt(2 * layers). Identical for every thread count.
Status init_params(const ParamLayout& layout, uint64_t seed, float* buffer);

}  // namespace vp
