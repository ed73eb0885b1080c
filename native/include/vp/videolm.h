// vp/videolm.h — the built-in video-language model (docs/model.md), CPU or CUDA, float32.
//
// One small architecture with hand-written forward and backward passes over this
// package's own kernels (layers.h, attention.h, gemm.h, optim.h, rng.h):
//
//   vision:  frames [F, H, W, 3] → patches [F·P, p·p·3] → linear (+bias)
//            + patch_pos[q]                                    → visual tokens [F, P, d]
//   text:    ids → tok_embed                                   → text tokens [nText, d]
//   packing: a batch of sequences (docs/kim.md), each a list of segments
//            {video v, optional frame map} or {text start, length}; rows of one
//            sequence are contiguous, sequences delimited by cuSeqlens. Every
//            visual row then gets frame_pos[o] of the slot o it fills in its
//            segment (a KIM copy carries the slot's position, as a frame
//            replaced at the pixel level would), or, for a segment marked
//            source_frame_position, frame_pos of the frame it was copied from.
//   decoder: L pre-norm layers: x += Wo·attn(RoPE(Wq·n(x)), RoPE(Wk·n(x)), Wv·n(x))
//            (causal inside each sequence, GQA), x += Wdown·SwiGLU(Wgu·n(x));
//            RoPE positions = position within the sequence (every token).
//   head:    final RMSNorm and the LM head (tied to tok_embed or untied) on the
//            rows that have a target only; mean cross-entropy over those rows.
//
// Parameters live in one flat float32 buffer; each named tensor is a span of it
// (`params()`), so checkpoints and AdamW work on views. Gradients, AdamW m and v
// have the same layout. The model is not thread-safe: one call at a time.
//
// Device: a model is created on the CPU or on CUDA (Device::kCUDA, float32
// throughout, our own kernels only; docs/model.md "CUDA"). On CUDA the flat
// buffers and every activation live in device memory; forward, backward, the
// optimizer step and generation run there, and only per-row scalars (losses,
// log-probs, the next token's logits for the host-side sampler) come back.
// get_buffer/set_buffer copy a flat buffer to/from host memory on either device.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vp {

struct VideoLMConfig {
  int64_t image_size = 32;   // square frames, H = W = image_size
  int64_t patch_size = 8;
  int64_t frames = 8;        // frames per video (frame position table size)
  int64_t width = 128;       // d
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  double mlp_ratio = 2.75;   // SwiGLU hidden = round_up(mlp_ratio * d, 32) unless ffn > 0
  int64_t ffn = 0;           // explicit SwiGLU hidden size (0: from mlp_ratio)
  int64_t vocab = 1024;
  int64_t max_seq = 512;     // longest packed sequence (rows) accepted
  bool tied = true;          // LM head shares tok_embed
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;

  int64_t head_dim() const { return heads > 0 ? width / heads : 0; }
  int64_t patches_per_frame() const {
    return patch_size > 0 ? (image_size / patch_size) * (image_size / patch_size) : 0;
  }
  int64_t patch_features() const { return patch_size * patch_size * 3; }
  int64_t ffn_dim() const;
};

// The bounds of a config's fields (besides the divisibility rules): what
// videolm_validate_config enforces. The head dim width/heads is bounded by
// kAttentionMaxHeadDim (vp/attention.h). The addon exports these as
// limits.videoLM, and lib/model/videolm.ts validates with them.
struct VideoLMLimits {
  static constexpr int64_t kMaxImageSize = 4096;  // patchSize <= imageSize <= this
  static constexpr int64_t kMaxFrames = 4096;
  static constexpr int64_t kMinWidth = 2;
  static constexpr int64_t kMaxWidth = 16384;     // heads, kvHeads <= width as well
  static constexpr int64_t kMaxLayers = 256;
  static constexpr int64_t kMaxFfn = int64_t{1} << 20;
  static constexpr double kMaxMlpRatio = 64.0;
  static constexpr int64_t kMinVocab = 2;
  static constexpr int64_t kMaxVocab = int64_t{1} << 24;
  static constexpr int64_t kMaxSeq = int64_t{1} << 24;
};

// Checks every field (names the field and the rule it breaks).
Status videolm_validate_config(const VideoLMConfig& c);
// "tiny" or "small" (docs/model.md has the table); vocab is left to the caller.
Status videolm_preset(const std::string& name, VideoLMConfig* out);

struct VideoLMParam {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // floats into the flat buffer
  int64_t numel = 0;
  bool decay = false;  // weight decay applies (matrices of the decoder and head)
};

// One segment of a packed sequence (docs/kim.md).
struct VideoLMSegment {
  int32_t video = -1;               // >= 0: a video segment
  const int32_t* frames = nullptr;  // video: source frame per output frame (null: identity)
  // Video with a frame map: false (default): output frame o gets frame_pos[o], the slot it fills
  // (the map then holds at most `frames` entries); true: it keeps frame_pos[frames[o]] of its source
  // (the earlier behaviour, kept for the ablation).
  bool source_frame_position = false;
  int64_t num_frames = 0;           // video with a frame map: its length (>= 1)
  int64_t text_start = 0;           // text segment: [text_start, text_start + text_len)
  int64_t text_len = 0;
};

struct VideoLMBatch {
  // Videos [num_videos, frames, image, image, 3]: uint8 (scaled v/127.5 - 1) or float32.
  const uint8_t* videos_u8 = nullptr;
  const float* videos_f32 = nullptr;
  int64_t num_videos = 0;
  const int32_t* text = nullptr;  // token ids [num_text]
  int64_t num_text = 0;
  // Target id per text token ([num_text], -1: none). Null: next token inside
  // each text segment (the last token of a segment has no target).
  const int32_t* targets = nullptr;
  std::vector<std::vector<VideoLMSegment>> sequences;
};

// The packed layout of a batch (what packTokens would produce).
struct VideoLMLayout {
  std::vector<int32_t> cu_seqlens;      // B + 1
  std::vector<int32_t> positions;       // [N] position within its sequence
  std::vector<int64_t> segment_start;   // first packed row of every segment, flattened in order
  std::vector<int32_t> text_row;        // packed row of each text token that is packed, else -1
  int64_t rows = 0;
};

struct VideoLMForwardOptions {
  int64_t tap_layer = -1;              // hidden state after this many layers (0..L); -1: no tap
  const int32_t* tap_rows = nullptr;   // packed rows to return
  int64_t num_tap = 0;
  bool want_logprobs = false;          // fill token_logprobs
  bool for_backward = true;            // keep activations for backward()
};

struct VideoLMForwardResult {
  double loss = 0.0;          // mean LM loss over counted targets (0 when none)
  int64_t count = 0;          // targets counted
  std::vector<float> tap;     // [num_tap, d]
  std::vector<float> token_logprobs;  // [num_text]: log p(target | prefix), 0 where no target
  VideoLMLayout layout;
};

struct VideoLMStepOptions {
  double lr = 1e-3;           // used when schedule_total_steps <= 0
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;    // > 0: lr from warmup + cosine of base lr at step (0-based)
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.1f;  // on decay params only
  double max_grad_norm = 1.0; // <= 0: no clipping
  double grad_scale = 1.0;    // e.g. 1 / accumulation micro-batches
};

struct VideoLMStepResult {
  double grad_norm = 0.0;     // before clipping (after grad_scale)
  double lr = 0.0;
  int64_t step = 0;           // steps taken so far (after this one)
};

struct VideoLMGenerateOptions {
  int64_t max_tokens = 32;
  float temperature = 0.0f;   // 0: greedy
  float top_p = 1.0f;
  uint64_t seed = 0;
  int32_t eos_id = -1;        // stop a sequence after it emits this id (kept in the output)
  // Called with (sequence, token) as each token is sampled, on the generating thread (streaming).
  std::function<void(int64_t, int32_t)> on_token;
  // The sampler stream of each sequence (empty: its index in the batch). A
  // sequence samples the same tokens in any batch that gives it the same stream
  // (how data-parallel ranks reproduce one process's rollouts).
  std::vector<uint64_t> streams;
};

// The flat buffers of a model (all num_params() floats, in params() layout).
enum class VideoLMBuffer { kParams, kGrads, kAdamM, kAdamV };

class VideoLM {
 public:
  // A model with parameters drawn from `seed` (Philox; std 0.02, output
  // projections 0.02/sqrt(2L), gains 1, biases 0), on `device`. CUDA without a
  // usable GPU (or in a CPU-only build) is Status::Unavailable with the reason.
  // The same seed gives the same parameters on both devices.
  static Status create(const VideoLMConfig& cfg, uint64_t seed, std::unique_ptr<VideoLM>* out,
                       Device device = Device::kCPU);
  ~VideoLM();

  const VideoLMConfig& config() const { return cfg_; }
  const std::vector<VideoLMParam>& params() const { return params_; }
  int64_t num_params() const { return num_params_; }
  Device device() const;
  // The precision of the projections in forward and backward: kFloat32 (the
  // default) or kBFloat16, mixed precision on the CPU: both operands of every
  // GEMM of the model (the patch embedding, attention and MLP projections, the
  // LM head, and their input and weight gradients) rounded to bfloat16, float32
  // accumulation and result (vp::gemm_f32_via_bf16; AVX512-BF16 where CPUID has
  // it, else the same values widened to float32). Parameters, gradients,
  // activations, attention, norms, softmax, losses and AdamW stay float32. A
  // clone keeps it. Other dtypes, or kBFloat16 on a CUDA model, are
  // Status::Invalid.
  Status set_compute_dtype(DType dtype);
  DType compute_dtype() const;
  // Host pointers to the flat buffers of a CPU model (null for a CUDA model:
  // use get_buffer/set_buffer). Gradients and AdamW m, v are allocated (zeroed)
  // on first use.
  float* param_data();
  const float* param_data() const;
  float* grad_data();
  float* adam_m();
  float* adam_v();
  // Copies a flat buffer (num_params() floats) to or from host memory, on either device.
  Status get_buffer(VideoLMBuffer which, float* host);
  Status set_buffer(VideoLMBuffer which, const float* host);
  // The flat buffer itself on the model's device (allocated, zeroed, on first
  // use): what a data-parallel all-reduce or broadcast works on in place.
  Status buffer_data(VideoLMBuffer which, float** data);
  int64_t step() const { return step_; }
  void set_step(int64_t s) { step_ = s; }
  Status init(uint64_t seed);

  // A copy of the parameters only (no gradients, optimizer state or cache), on
  // the same device: the frozen reference model of the RL stage.
  Status clone(std::unique_ptr<VideoLM>* out) const;

  // Packs the batch and computes the loss (and tap/log-probs). Keeps the
  // activations for backward() when opts.for_backward.
  Status forward(const VideoLMBatch& batch, const VideoLMForwardOptions& opts,
                 VideoLMForwardResult* res);
  // Gradients of  grad_loss · loss + Σ dtap ⊙ tap + Σ dlogprobs ⊙ token_logprobs
  // into the gradient buffer (accumulated when `accumulate`, else overwritten).
  // dtap [num_tap, d] and dlogprobs [num_text] (host memory) may be null.
  Status backward(float grad_loss, const float* dtap, const float* dlogprobs, bool accumulate);
  Status zero_grad();

  // Global-norm clipping, then AdamW (lr from the schedule), step_ += 1. A NaN or
  // infinite gradient norm skips the step (nothing changes) and is returned in res.
  Status optimizer_step(const VideoLMStepOptions& o, VideoLMStepResult* res);

  // Test helper: the logits of every packed row, after the final norm and the head.
  Status logits_all(const VideoLMBatch& batch, std::vector<float>* logits, VideoLMLayout* layout);

  // Generation: each sequence of `prompts` is a prompt; new tokens continue
  // it (KV cache, one token per sequence per step). out[b] receives the new ids.
  Status generate(const VideoLMBatch& prompts, const VideoLMGenerateOptions& o,
                  std::vector<std::vector<int32_t>>* out);
  // Greedy/sampled continuation logits for tests: the logits of each generated
  // step through the cache (steps x vocab per sequence), given forced tokens.
  Status cached_logits(const VideoLMBatch& prompts, const std::vector<std::vector<int32_t>>& forced,
                       std::vector<std::vector<float>>* logits);

  struct Impl;

 private:
  VideoLM() = default;
  VideoLMConfig cfg_;
  std::vector<VideoLMParam> params_;
  int64_t num_params_ = 0;
  int64_t step_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vp
