// The built-in VideoLM: config, parameters, forward, backward, optimizer step, on the
// model's device (CPU or CUDA kernels through videolm_backend.h's ModelOps).
// See vp/videolm.h for the architecture and docs/model.md for the decisions.
#include "vp/videolm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "videolm_impl.h"
#include "vp/attention.h"
#include "vp/gemm.h"
#include "vp/layers.h"
#include "vp/optim.h"
#include "vp/pack.h"
#include "vp/rng.h"

namespace vp {

namespace {
std::string S(int64_t v) { return std::to_string(v); }
// 2^k for a power of two (how the limits read in messages), else the number.
std::string Pow2(int64_t v) {
  for (int k = 10; k < 62; ++k)
    if (v == int64_t{1} << k) return "2^" + S(k);
  return S(v);
}
}  // namespace

int64_t VideoLMConfig::ffn_dim() const {
  if (ffn > 0) return ffn;
  const double h = mlp_ratio * static_cast<double>(width);
  const int64_t r = static_cast<int64_t>(std::ceil(h / 32.0)) * 32;
  return std::max<int64_t>(r, 32);
}

Status videolm_validate_config(const VideoLMConfig& c) {
  using L = VideoLMLimits;
  auto bad = [](const std::string& m) { return Status::Invalid("VideoLM config: " + m); };
  auto in = [](int64_t lo, int64_t hi) {
    std::string r("[");
    r += S(lo);
    r += ", ";
    r += S(hi);
    return r + "]";
  };
  if (c.patch_size < 1) return bad("patchSize must be >= 1, got " + S(c.patch_size));
  if (c.image_size < c.patch_size || c.image_size % c.patch_size != 0)
    return bad("imageSize must be a positive multiple of patchSize=" + S(c.patch_size) + ", got " + S(c.image_size));
  if (c.image_size > L::kMaxImageSize) return bad("imageSize must be <= " + S(L::kMaxImageSize) + ", got " + S(c.image_size));
  if (c.frames < 1 || c.frames > L::kMaxFrames) return bad("frames must be in " + in(1, L::kMaxFrames) + ", got " + S(c.frames));
  if (c.width < L::kMinWidth || c.width > L::kMaxWidth)
    return bad("width must be in " + in(L::kMinWidth, L::kMaxWidth) + ", got " + S(c.width));
  if (c.layers < 1 || c.layers > L::kMaxLayers) return bad("layers must be in " + in(1, L::kMaxLayers) + ", got " + S(c.layers));
  if (c.heads < 1 || c.width % c.heads != 0)
    return bad("heads must divide width=" + S(c.width) + ", got " + S(c.heads));
  if (c.head_dim() % 2 != 0 || c.head_dim() > kAttentionMaxHeadDim)
    return bad("the head dim width/heads must be even and <= " + S(kAttentionMaxHeadDim) + ", got " + S(c.head_dim()));
  if (c.kv_heads < 1 || c.heads % c.kv_heads != 0)
    return bad("kvHeads must divide heads=" + S(c.heads) + ", got " + S(c.kv_heads));
  if (c.ffn < 0 || c.ffn > L::kMaxFfn) return bad("ffn must be in [0, " + Pow2(L::kMaxFfn) + "], got " + S(c.ffn));
  if (c.ffn == 0 && !(c.mlp_ratio > 0.0 && c.mlp_ratio <= L::kMaxMlpRatio))
    return bad("mlpRatio must be in (0, " + S(static_cast<int64_t>(L::kMaxMlpRatio)) + "], got " + std::to_string(c.mlp_ratio));
  if (c.vocab < L::kMinVocab || c.vocab > L::kMaxVocab) return bad("vocab must be in [" + S(L::kMinVocab) + ", " + Pow2(L::kMaxVocab) + "], got " + S(c.vocab));
  if (c.max_seq < 1 || c.max_seq > L::kMaxSeq) return bad("maxSeq must be in [1, " + Pow2(L::kMaxSeq) + "], got " + S(c.max_seq));
  if (!(c.rope_theta > 1.0f) || !std::isfinite(c.rope_theta))
    return bad("ropeTheta must be > 1, got " + std::to_string(c.rope_theta));
  if (!(c.norm_eps > 0.0f) || !std::isfinite(c.norm_eps))
    return bad("normEps must be > 0, got " + std::to_string(c.norm_eps));
  return Status::Ok();
}

Status videolm_preset(const std::string& name, VideoLMConfig* out) {
  VideoLMConfig c;
  if (name == "tiny") {
    c.image_size = 32; c.patch_size = 8; c.frames = 8; c.width = 128; c.layers = 4;
    c.heads = 4; c.kv_heads = 2; c.mlp_ratio = 2.75; c.vocab = 1024; c.max_seq = 512;
  } else if (name == "small") {
    c.image_size = 64; c.patch_size = 8; c.frames = 16; c.width = 512; c.layers = 8;
    c.heads = 8; c.kv_heads = 4; c.mlp_ratio = 2.75; c.vocab = 4096; c.max_seq = 2048;
  } else {
    return Status::Invalid("VideoLM preset must be 'tiny' or 'small', got '" + name + "'");
  }
  *out = c;
  return Status::Ok();
}


// ---------------------------------------------------------------------------
// Parameters and construction

VideoLM::~VideoLM() = default;

Status VideoLM::create(const VideoLMConfig& cfg, uint64_t seed, std::unique_ptr<VideoLM>* out, Device device) {
  VP_RETURN_IF_ERROR(videolm_validate_config(cfg));
  if (device == Device::kCUDA && !cuda::available())
    return Status::Unavailable("VideoLM: device 'cuda' is unavailable: " + cuda::unavailable_reason());
  std::unique_ptr<VideoLM> m(new VideoLM());
  m->cfg_ = cfg;
  const int64_t d = cfg.width, D = cfg.head_dim(), H = cfg.heads, Hkv = cfg.kv_heads, F = cfg.ffn_dim();
  int64_t off = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool decay) {
    VideoLMParam p;
    p.name = name;
    p.shape = std::move(shape);
    p.numel = 1;
    for (int64_t s : p.shape) p.numel *= s;
    p.offset = off;
    p.decay = decay;
    off += p.numel;
    m->params_.push_back(std::move(p));
  };
  add("vision.patch_embed.weight", {d, cfg.patch_features()}, true);
  add("vision.patch_embed.bias", {d}, false);
  add("vision.frame_pos", {cfg.frames, d}, false);
  add("vision.patch_pos", {cfg.patches_per_frame(), d}, false);
  add("tok_embed", {cfg.vocab, d}, false);
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string p = "layers." + S(l) + ".";
    add(p + "attn_norm", {d}, false);
    add(p + "wq", {H * D, d}, true);
    add(p + "wk", {Hkv * D, d}, true);
    add(p + "wv", {Hkv * D, d}, true);
    add(p + "wo", {d, H * D}, true);
    add(p + "mlp_norm", {d}, false);
    add(p + "w_gate_up", {2 * F, d}, true);
    add(p + "w_down", {d, F}, true);
  }
  add("final_norm", {d}, false);
  if (!cfg.tied) add("lm_head", {cfg.vocab, d}, true);
  if (off > (int64_t(1) << 33)) return Status::Invalid("VideoLM config: too many parameters (" + S(off) + ")");
  m->num_params_ = off;
  m->impl_ = std::make_unique<Impl>(device);
  VP_RETURN_IF_ERROR(m->impl_->ops.alloc(m->impl_->w, off));
  m->impl_->index(*m);
  VP_RETURN_IF_ERROR(m->init(seed));
  *out = std::move(m);
  return Status::Ok();
}

Status VideoLM::init(uint64_t seed) {
  const float base = 0.02f;
  const float proj = base / std::sqrt(2.0f * static_cast<float>(cfg_.layers));
  Impl& I = *impl_;
  // Drawn on the host (the same numbers for every device), then copied over.
  std::vector<float> host;
  float* w = I.w.data();
  if (I.ops.cuda()) {
    try {
      host.resize(static_cast<size_t>(num_params_));
    } catch (const std::bad_alloc&) {
      return Status::Internal("VideoLM: out of memory for " + S(num_params_) + " parameters");
    }
    w = host.data();
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const VideoLMParam& p = params_[i];
    float* dst = w + p.offset;
    const std::string& n = p.name;
    auto ends = [&](const char* s) {
      const size_t k = std::strlen(s);
      return n.size() >= k && n.compare(n.size() - k, k, s) == 0;
    };
    if (ends("norm")) {
      std::fill(dst, dst + p.numel, 1.0f);
    } else if (ends(".bias")) {
      std::fill(dst, dst + p.numel, 0.0f);
    } else {
      const float sd = (ends(".wo") || ends(".w_down")) ? proj : base;
      VP_RETURN_IF_ERROR(rng_normal(seed, static_cast<uint64_t>(i), 0.0f, sd, dst, p.numel));
    }
  }
  if (I.ops.cuda()) VP_RETURN_IF_ERROR(I.ops.to_device(I.w.data(), host.data(), num_params_));
  step_ = 0;
  if (I.m.size() > 0) VP_RETURN_IF_ERROR(I.ops.zero(I.m.data(), I.m.size()));
  if (I.v.size() > 0) VP_RETURN_IF_ERROR(I.ops.zero(I.v.data(), I.v.size()));
  return Status::Ok();
}

Device VideoLM::device() const { return impl_->ops.device(); }

Status VideoLM::set_compute_dtype(DType dtype) {
  if (dtype != DType::kFloat32 && dtype != DType::kBFloat16)
    return Status::Invalid("setComputeDtype: dtype must be 'float32' or 'bfloat16'");
  if (dtype == DType::kBFloat16 && impl_->ops.cuda())
    return Status::Invalid("setComputeDtype: 'bfloat16' compute is a CPU mode; a CUDA model keeps float32 products");
  impl_->ops.set_bf16_products(dtype == DType::kBFloat16);
  return Status::Ok();
}

DType VideoLM::compute_dtype() const { return impl_->ops.bf16_products() ? DType::kBFloat16 : DType::kFloat32; }

Status VideoLM::Impl::state(detail::Buf<float>& b, int64_t n, float** out) {
  if (b.size() != n) VP_RETURN_IF_ERROR(ops.zeros(b, n));
  *out = b.data();
  return Status::Ok();
}

detail::Buf<float>* VideoLM::Impl::buffer(VideoLMBuffer which) {
  switch (which) {
    case VideoLMBuffer::kParams: return &w;
    case VideoLMBuffer::kGrads: return &g;
    case VideoLMBuffer::kAdamM: return &m;
    case VideoLMBuffer::kAdamV: return &v;
  }
  return nullptr;
}

namespace {
// A CPU model's flat buffer as a host pointer (allocated on first use); null on CUDA.
float* host_buffer(VideoLM::Impl& I, VideoLMBuffer which, int64_t n) {
  if (I.ops.cuda()) return nullptr;
  float* p = nullptr;
  if (!I.state(*I.buffer(which), n, &p).ok()) return nullptr;
  return p;
}
}  // namespace

float* VideoLM::param_data() { return impl_->ops.cuda() ? nullptr : impl_->w.data(); }
const float* VideoLM::param_data() const { return impl_->ops.cuda() ? nullptr : impl_->w.data(); }
float* VideoLM::grad_data() { return host_buffer(*impl_, VideoLMBuffer::kGrads, num_params_); }
float* VideoLM::adam_m() { return host_buffer(*impl_, VideoLMBuffer::kAdamM, num_params_); }
float* VideoLM::adam_v() { return host_buffer(*impl_, VideoLMBuffer::kAdamV, num_params_); }

Status VideoLM::get_buffer(VideoLMBuffer which, float* host) {
  detail::Buf<float>* b = impl_->buffer(which);
  if (!b || !host) return Status::Invalid("VideoLM.getBuffer: unknown buffer or null destination");
  float* p = nullptr;
  VP_RETURN_IF_ERROR(impl_->state(*b, num_params_, &p));
  return impl_->ops.to_host(host, p, num_params_);
}

Status VideoLM::set_buffer(VideoLMBuffer which, const float* host) {
  detail::Buf<float>* b = impl_->buffer(which);
  if (!b || !host) return Status::Invalid("VideoLM.setBuffer: unknown buffer or null source");
  float* p = nullptr;
  VP_RETURN_IF_ERROR(impl_->state(*b, num_params_, &p));
  return impl_->ops.to_device(p, host, num_params_);
}

Status VideoLM::buffer_data(VideoLMBuffer which, float** data) {
  detail::Buf<float>* b = impl_->buffer(which);
  if (!b || !data) return Status::Invalid("VideoLM.bufferData: unknown buffer or null destination");
  return impl_->state(*b, num_params_, data);
}

Status VideoLM::clone(std::unique_ptr<VideoLM>* out) const {
  std::unique_ptr<VideoLM> m(new VideoLM());
  m->cfg_ = cfg_;
  m->params_ = params_;
  m->num_params_ = num_params_;
  m->impl_ = std::make_unique<Impl>(impl_->ops.device());
  m->impl_->ops.set_bf16_products(impl_->ops.bf16_products());
  VP_RETURN_IF_ERROR(m->impl_->ops.alloc(m->impl_->w, num_params_));
  VP_RETURN_IF_ERROR(m->impl_->ops.copy(m->impl_->w.data(), impl_->w.data(), num_params_));
  m->impl_->index(*m);
  m->step_ = step_;
  *out = std::move(m);
  return Status::Ok();
}

Status VideoLM::zero_grad() {
  float* g = nullptr;
  VP_RETURN_IF_ERROR(impl_->state(impl_->g, num_params_, &g));
  return impl_->ops.zero(g, num_params_);
}

// ---------------------------------------------------------------------------
// Impl: parameter offsets and the activation cache

void VideoLM::Impl::index(const VideoLM& m) {
  const auto& ps = m.params_;
  auto find = [&](const std::string& n) -> int64_t {
    for (const auto& p : ps)
      if (p.name == n) return p.offset;
    return -1;
  };
  o_patch_w = find("vision.patch_embed.weight");
  o_patch_b = find("vision.patch_embed.bias");
  o_frame_pos = find("vision.frame_pos");
  o_patch_pos = find("vision.patch_pos");
  o_tok = find("tok_embed");
  o_final_norm = find("final_norm");
  o_head = m.cfg_.tied ? o_tok : find("lm_head");
  lo.clear();
  for (int64_t l = 0; l < m.cfg_.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    LayerOffsets o;
    o.attn_norm = find(p + "attn_norm");
    o.wq = find(p + "wq");
    o.wk = find(p + "wk");
    o.wv = find(p + "wv");
    o.wo = find(p + "wo");
    o.mlp_norm = find(p + "mlp_norm");
    o.wgu = find(p + "w_gate_up");
    o.wdown = find(p + "w_down");
    lo.push_back(o);
  }
}

namespace {

// CSR of `n` items by key in [0, groups): start [groups + 1], order (items by key, then index).
void csr(const std::vector<int32_t>& key, int64_t groups, std::vector<int32_t>* start, std::vector<int32_t>* order,
         const std::vector<int32_t>& item) {
  start->assign(static_cast<size_t>(groups + 1), 0);
  for (int32_t k : key) ++(*start)[static_cast<size_t>(k) + 1];
  for (int64_t g = 0; g < groups; ++g) (*start)[g + 1] += (*start)[g];
  order->resize(key.size());
  std::vector<int32_t> fill(start->begin(), start->end() - 1);
  for (size_t i = 0; i < key.size(); ++i) (*order)[static_cast<size_t>(fill[key[i]]++)] = item[i];
}

}  // namespace

// Validates and packs a batch: layout, row sources, head rows, and the CSR maps
// the embedding backward uses.
Status VideoLM::Impl::pack(const VideoLMConfig& cfg, const VideoLMBatch& b, const char* fn) {
  const std::string f(fn);
  if (b.num_videos < 0) return Status::Invalid(f + ": numVideos must be >= 0");
  if (b.num_text < 0) return Status::Invalid(f + ": text length must be >= 0");
  if (b.num_text > 0 && !b.text) return Status::Invalid(f + ": text is null");
  if (b.num_videos > 0 && !b.videos_u8 && !b.videos_f32) return Status::Invalid(f + ": videos is null");
  if (b.sequences.empty()) return Status::Invalid(f + ": sequences must hold at least one sequence");
  const int64_t V = cfg.vocab, P = cfg.patches_per_frame(), Fr = cfg.frames;
  if (b.num_videos > INT32_MAX / 2 / (Fr * P)) return Status::Invalid(f + ": too many videos");
  for (int64_t i = 0; i < b.num_text; ++i)
    if (b.text[i] < 0 || b.text[i] >= V)
      return Status::OutOfRange(f + ": text[" + S(i) + "] = " + S(b.text[i]) + " is not a token id in [0, " + S(V) + ")");
  if (b.targets)
    for (int64_t i = 0; i < b.num_text; ++i)
      if (b.targets[i] < -1 || b.targets[i] >= V)
        return Status::OutOfRange(f + ": targets[" + S(i) + "] = " + S(b.targets[i]) + " must be -1 or in [0, " +
                                  S(V) + ")");
  // Validate the segments against the model (messages name sequences[s][j]) and
  // list them as packing segments; the rows come from vp::pack_plan, the one
  // implementation of the packed-row layout (what vp.packTokens reads too).
  std::vector<PackSegment> segs;
  std::vector<int32_t> frame_map;
  layout = VideoLMLayout();
  for (size_t s = 0; s < b.sequences.size(); ++s) {
    int64_t len = 0;
    for (size_t j = 0; j < b.sequences[s].size(); ++j) {
      const VideoLMSegment& g = b.sequences[s][j];
      const std::string where = f + ": sequences[" + S(s) + "][" + S(j) + "]";
      PackSegment seg;
      seg.sequence = static_cast<int32_t>(s);
      if (g.video >= 0) {
        if (g.video >= b.num_videos)
          return Status::OutOfRange(where + ".video = " + S(g.video) + " must be < the number of videos " + S(b.num_videos));
        int64_t nf = Fr;
        if (g.frames) {
          if (g.num_frames < 1) return Status::Invalid(where + ".frames must hold at least one frame");
          nf = g.num_frames;
          for (int64_t o = 0; o < nf; ++o)
            if (g.frames[o] < 0 || g.frames[o] >= Fr)
              return Status::OutOfRange(where + ".frames[" + S(o) + "] = " + S(g.frames[o]) + " must be in [0, " + S(Fr) + ")");
          seg.frames_offset = static_cast<int64_t>(frame_map.size());
          frame_map.insert(frame_map.end(), g.frames, g.frames + nf);
        }
        seg.kind = PackSegmentKind::kVideo;
        seg.video = static_cast<int32_t>(g.video);
        seg.num_frames = static_cast<int32_t>(nf);
        len += nf * P;
      } else {
        if (g.text_start < 0 || g.text_len < 0 || g.text_start + g.text_len > b.num_text)
          return Status::OutOfRange(where + ".text = [" + S(g.text_start) + ", " + S(g.text_len) +
                                    "] must lie inside the text of length " + S(b.num_text));
        seg.kind = PackSegmentKind::kText;
        seg.text_start = g.text_start;
        seg.text_length = g.text_len;
        len += g.text_len;
      }
      if (len > cfg.max_seq)
        return Status::OutOfRange(f + ": sequences[" + S(s) + "] has more than maxSeq=" + S(cfg.max_seq) + " tokens");
      segs.push_back(seg);
    }
  }
  PackSources src;
  src.num_videos = b.num_videos;
  src.frames = Fr;
  src.tokens_per_frame = P;
  src.num_text = b.num_text;
  const int64_t num_seqs = static_cast<int64_t>(b.sequences.size());
  int64_t rows = 0;
  VP_RETURN_IF_ERROR(pack_count(src, segs.data(), static_cast<int64_t>(segs.size()), num_seqs, frame_map.data(),
                                static_cast<int64_t>(frame_map.size()), &rows));
  if (rows == 0) return Status::Invalid(f + ": the batch has no tokens");
  if (rows > INT32_MAX / 2) return Status::Invalid(f + ": too many tokens");
  std::vector<int32_t> source(static_cast<size_t>(rows)), segment(static_cast<size_t>(rows));
  layout.positions.resize(static_cast<size_t>(rows));
  layout.cu_seqlens.resize(static_cast<size_t>(num_seqs + 1));
  VP_RETURN_IF_ERROR(pack_plan(src, segs.data(), static_cast<int64_t>(segs.size()), num_seqs, frame_map.data(),
                               static_cast<int64_t>(frame_map.size()), rows, source.data(), layout.positions.data(),
                               segment.data(), layout.cu_seqlens.data()));
  layout.rows = rows;
  num_vis = b.num_videos * Fr * P;
  // What the model keeps of the plan: each row's visual token (>= 0) or its token id (-id - 1),
  // each text token's row, and the first row of every segment (an empty one: where the next begins).
  row_from.resize(static_cast<size_t>(rows));
  layout.text_row.assign(static_cast<size_t>(b.num_text), -1);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t from = source[static_cast<size_t>(r)];
    if (from < num_vis) {
      row_from[static_cast<size_t>(r)] = static_cast<int32_t>(from);
    } else {
      const int64_t t = from - num_vis;
      row_from[static_cast<size_t>(r)] = -b.text[t] - 1;
      layout.text_row[static_cast<size_t>(t)] = static_cast<int32_t>(r);
    }
  }
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t first = static_cast<int64_t>(layout.segment_start.size());
    const size_t nseg = b.sequences[static_cast<size_t>(s)].size();
    layout.segment_start.resize(layout.segment_start.size() + nseg, -1);
    for (int64_t r = layout.cu_seqlens[s]; r < layout.cu_seqlens[s + 1]; ++r) {
      int64_t& st = layout.segment_start[static_cast<size_t>(first + segment[static_cast<size_t>(r)])];
      if (st < 0) st = r;
    }
    for (int64_t j = static_cast<int64_t>(nseg) - 1; j >= 0; --j) {
      int64_t& st = layout.segment_start[static_cast<size_t>(first + j)];
      if (st < 0) st = j + 1 < static_cast<int64_t>(nseg) ? layout.segment_start[static_cast<size_t>(first + j + 1)] : layout.cu_seqlens[s + 1];
    }
  }
  // Frame positions of the visual rows: a video segment's rows are its output frames in order,
  // P rows each, so row r of the segment starting at `st` fills slot (r - st) / P.
  fpos_rows.clear();
  fpos_frame.clear();
  for (int64_t s = 0, first = 0; s < num_seqs; ++s) {
    const auto& seq = b.sequences[static_cast<size_t>(s)];
    for (int64_t r = layout.cu_seqlens[s]; r < layout.cu_seqlens[s + 1]; ++r) {
      const int32_t from = row_from[static_cast<size_t>(r)];
      if (from < 0) continue;
      const int32_t j = segment[static_cast<size_t>(r)];
      const VideoLMSegment& g = seq[static_cast<size_t>(j)];
      const int64_t slot = (r - layout.segment_start[static_cast<size_t>(first + j)]) / P;
      if (!g.source_frame_position && slot >= Fr)
        return Status::OutOfRange(f + ": sequences[" + S(s) + "][" + S(j) + "].frames has " + S(g.num_frames) +
                                  " entries; a frame map that takes the slots' positions holds at most frames=" + S(Fr) +
                                  " (or mark it sourceFramePosition)");
      fpos_rows.push_back(static_cast<int32_t>(r));
      fpos_frame.push_back(static_cast<int32_t>(g.source_frame_position ? (from / P) % Fr : slot));
    }
    first += static_cast<int64_t>(seq.size());
  }
  csr(fpos_frame, Fr, &fpos_start, &fpos_order, fpos_rows);
  // Head rows: text tokens that are packed and have a target.
  head_text.clear();
  head_row.clear();
  head_tgt.clear();
  for (size_t s = 0; s < b.sequences.size(); ++s)
    for (const VideoLMSegment& g : b.sequences[s]) {
      if (g.video >= 0) continue;
      for (int64_t t = 0; t < g.text_len; ++t) {
        const int64_t ti = g.text_start + t;
        int32_t tgt;
        if (b.targets) tgt = b.targets[ti];
        else tgt = (t + 1 < g.text_len) ? b.text[ti + 1] : -1;
        if (tgt < 0) continue;
        head_text.push_back(ti);
        head_row.push_back(layout.text_row[static_cast<size_t>(ti)]);
        head_tgt.push_back(tgt);
      }
    }
  // Packed rows grouped by visual token, and by token id (distinct ids, ascending).
  std::vector<int32_t> vkey, vitem, tkey, titem;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t from = row_from[static_cast<size_t>(r)];
    if (from >= 0) {
      vkey.push_back(from);
      vitem.push_back(static_cast<int32_t>(r));
    } else {
      tkey.push_back(-from - 1);
      titem.push_back(static_cast<int32_t>(r));
    }
  }
  csr(vkey, num_vis, &vis_start, &vis_order, vitem);
  tok_ids = tkey;
  std::sort(tok_ids.begin(), tok_ids.end());
  tok_ids.erase(std::unique(tok_ids.begin(), tok_ids.end()), tok_ids.end());
  for (auto& k : tkey) k = static_cast<int32_t>(std::lower_bound(tok_ids.begin(), tok_ids.end(), k) - tok_ids.begin());
  csr(tkey, static_cast<int64_t>(tok_ids.size()), &tok_start, &tok_order, titem);
  return Status::Ok();
}

// The index arrays of the packed batch on the model's device.
Status VideoLM::Impl::upload_indices() {
  VP_RETURN_IF_ERROR(ops.upload(d_row_from, row_from));
  VP_RETURN_IF_ERROR(ops.upload(d_positions, layout.positions));
  VP_RETURN_IF_ERROR(ops.upload(d_head_row, head_row));
  VP_RETURN_IF_ERROR(ops.upload(d_head_tgt, head_tgt));
  VP_RETURN_IF_ERROR(ops.upload(d_vis_start, vis_start));
  VP_RETURN_IF_ERROR(ops.upload(d_vis_order, vis_order));
  VP_RETURN_IF_ERROR(ops.upload(d_tok_ids, tok_ids));
  VP_RETURN_IF_ERROR(ops.upload(d_tok_start, tok_start));
  VP_RETURN_IF_ERROR(ops.upload(d_fpos_rows, fpos_rows));
  VP_RETURN_IF_ERROR(ops.upload(d_fpos_frame, fpos_frame));
  VP_RETURN_IF_ERROR(ops.upload(d_fpos_start, fpos_start));
  VP_RETURN_IF_ERROR(ops.upload(d_fpos_order, fpos_order));
  return ops.upload(d_tok_order, tok_order);
}

// Vision encoder for every video of the batch: vis [nV*F*P, d].
Status VideoLM::Impl::vision_forward(const VideoLM& m, const VideoLMBatch& b) {
  const VideoLMConfig& c = m.cfg_;
  const int64_t P = c.patches_per_frame(), Fr = c.frames, d = c.width, pf = c.patch_features();
  const int64_t n = num_vis, nf = b.num_videos * Fr, frame = c.image_size * c.image_size * 3;
  VP_RETURN_IF_ERROR(ops.alloc(patches, n * pf));
  VP_RETURN_IF_ERROR(ops.alloc(vis, n * d));
  if (n == 0) return Status::Ok();
  if (b.videos_u8) {
    const uint8_t* src = b.videos_u8;
    if (ops.cuda()) {
      VP_RETURN_IF_ERROR(ops.upload(video_u8, src, nf * frame));
      src = video_u8.data();
    }
    VP_RETURN_IF_ERROR(ops.patchify_u8(src, nf, c.image_size, c.image_size, c.patch_size, patches.data()));
  } else {
    const float* src = b.videos_f32;
    if (ops.cuda()) {
      VP_RETURN_IF_ERROR(ops.upload(video_f32, src, nf * frame));
      src = video_f32.data();
    }
    VP_RETURN_IF_ERROR(ops.patchify_f32(src, nf, c.image_size, c.image_size, c.patch_size, patches.data()));
  }
  const float* w = this->w.data();
  VP_RETURN_IF_ERROR(ops.mm_nt(patches.data(), w + o_patch_w, n, d, pf, vis.data(), 0.0f));
  // Frame positions are added after packing (add_frame_positions), by the slot each frame fills.
  return ops.vision_add_pos(vis.data(), w + o_patch_b, nullptr, w + o_patch_pos, n, P, Fr, d);
}

// One decoder layer forward over N rows; writes the cache and x_out.
Status VideoLM::Impl::layer_forward(const VideoLM& m, int64_t l, const float* x, float* x_out) {
  const VideoLMConfig& c = m.cfg_;
  const int64_t N = layout.rows, d = c.width, H = c.heads, Hkv = c.kv_heads, D = c.head_dim(), F = c.ffn_dim();
  const int64_t kvd = Hkv * D;
  const float* w = this->w.data();
  const LayerOffsets& o = lo[static_cast<size_t>(l)];
  LayerCache& L = cache[static_cast<size_t>(l)];
  VP_RETURN_IF_ERROR(ops.alloc_all({{&L.n1, N * d}, {&L.rstd1, N}, {&L.q, N * d}, {&L.k, N * kvd}, {&L.v, N * kvd},
                                    {&L.att, N * d}, {&L.lse, H * N}, {&L.xmid, N * d}, {&L.n2, N * d},
                                    {&L.rstd2, N}, {&L.gu, N * 2 * F}, {&L.act, N * F}}));
  const int32_t* pos = d_positions.data();
  VP_RETURN_IF_ERROR(ops.rmsnorm_forward(x, w + o.attn_norm, N, d, c.norm_eps, L.n1.data(), L.rstd1.data()));
  VP_RETURN_IF_ERROR(ops.mm_nt(L.n1.data(), w + o.wq, N, d, d, L.q.data(), 0.0f));
  VP_RETURN_IF_ERROR(ops.mm_nt(L.n1.data(), w + o.wk, N, kvd, d, L.k.data(), 0.0f));
  VP_RETURN_IF_ERROR(ops.mm_nt(L.n1.data(), w + o.wv, N, kvd, d, L.v.data(), 0.0f));
  VP_RETURN_IF_ERROR(ops.rope_apply(L.q.data(), pos, N, H, D, c.rope_theta, false, L.q.data()));
  VP_RETURN_IF_ERROR(ops.rope_apply(L.k.data(), pos, N, Hkv, D, c.rope_theta, false, L.k.data()));
  VP_RETURN_IF_ERROR(ops.attention(L.q.data(), L.k.data(), L.v.data(), N, H, Hkv, D, layout.cu_seqlens, L.att.data(),
                                   L.lse.data()));
  // xmid = x + att · Wo^T
  VP_RETURN_IF_ERROR(ops.copy(L.xmid.data(), x, N * d));
  VP_RETURN_IF_ERROR(ops.mm_nt(L.att.data(), w + o.wo, N, d, d, L.xmid.data(), 1.0f));
  VP_RETURN_IF_ERROR(ops.rmsnorm_forward(L.xmid.data(), w + o.mlp_norm, N, d, c.norm_eps, L.n2.data(), L.rstd2.data()));
  VP_RETURN_IF_ERROR(ops.mm_nt(L.n2.data(), w + o.wgu, N, 2 * F, d, L.gu.data(), 0.0f));
  VP_RETURN_IF_ERROR(ops.swiglu_forward(L.gu.data(), L.gu.data() + F, N, F, 2 * F, L.act.data()));
  VP_RETURN_IF_ERROR(ops.copy(x_out, L.xmid.data(), N * d));
  return ops.mm_nt(L.act.data(), w + o.wdown, N, d, F, x_out, 1.0f);
}

Status VideoLM::Impl::run_forward(const VideoLM& m, const VideoLMBatch& b, bool with_head, const char* fn) {
  VP_RETURN_IF_ERROR(pack(m.cfg_, b, fn));
  VP_RETURN_IF_ERROR(upload_indices());
  const int64_t d = m.cfg_.width, N = layout.rows, Lc = m.cfg_.layers;
  cache.resize(static_cast<size_t>(Lc));
  xs.resize(static_cast<size_t>(Lc + 1));
  for (auto& x : xs) VP_RETURN_IF_ERROR(ops.alloc(x, N * d));
  VP_RETURN_IF_ERROR(vision_forward(m, b));
  const float* w = this->w.data();
  VP_RETURN_IF_ERROR(ops.embed_rows(vis.data(), w + o_tok, d_row_from.data(), N, d, xs[0].data()));
  // x0[fpos_rows[i]] += frame_pos[fpos_frame[i]] (rows are distinct).
  const int64_t nf = static_cast<int64_t>(fpos_rows.size());
  if (nf > 0) {
    VP_RETURN_IF_ERROR(ops.alloc(fpos, nf * d));
    VP_RETURN_IF_ERROR(ops.rows_gather(w + o_frame_pos, d_fpos_frame.data(), nf, d, fpos.data()));
    VP_RETURN_IF_ERROR(ops.rows_scatter_add(fpos.data(), d_fpos_rows.data(), nf, d, xs[0].data()));
  }
  for (int64_t l = 0; l < Lc; ++l)
    VP_RETURN_IF_ERROR(layer_forward(m, l, xs[static_cast<size_t>(l)].data(), xs[static_cast<size_t>(l + 1)].data()));
  has_cache = true;
  loss = 0.0;
  count = 0;
  if (!with_head) return Status::Ok();
  // Head over target rows.
  const int64_t R = static_cast<int64_t>(head_row.size()), V = m.cfg_.vocab;
  VP_RETURN_IF_ERROR(ops.alloc_all({{&hx, R * d}, {&hn, R * d}, {&hrstd, R}, {&logits, R * V}, {&hlse, R}, {&htgt, R}}));
  h_lse.assign(static_cast<size_t>(R), 0.0f);
  h_tgt.assign(static_cast<size_t>(R), 0.0f);
  if (R > 0) {
    VP_RETURN_IF_ERROR(ops.rows_gather(xs[static_cast<size_t>(Lc)].data(), d_head_row.data(), R, d, hx.data()));
    VP_RETURN_IF_ERROR(ops.rmsnorm_forward(hx.data(), w + o_final_norm, R, d, m.cfg_.norm_eps, hn.data(), hrstd.data()));
    VP_RETURN_IF_ERROR(ops.mm_nt(hn.data(), w + o_head, R, V, d, logits.data(), 0.0f));
    VP_RETURN_IF_ERROR(ops.row_lse_target(logits.data(), d_head_tgt.data(), R, V, hlse.data(), htgt.data()));
    VP_RETURN_IF_ERROR(ops.to_host(h_lse.data(), hlse.data(), R));
    VP_RETURN_IF_ERROR(ops.to_host(h_tgt.data(), htgt.data(), R));
    // The mean in double from the per-row terms (precise enough for gradient checks).
    double acc = 0.0;
    for (int64_t r = 0; r < R; ++r) acc += static_cast<double>(h_lse[r]) - static_cast<double>(h_tgt[r]);
    loss = acc / static_cast<double>(R);
    count = R;
  }
  return Status::Ok();
}

Status VideoLM::forward(const VideoLMBatch& batch, const VideoLMForwardOptions& opts, VideoLMForwardResult* res) {
  const char* fn = "VideoLM.forward";
  if (opts.tap_layer < -1 || opts.tap_layer > cfg_.layers)
    return Status::OutOfRange(std::string(fn) + ": tapLayer must be in [0, " + S(cfg_.layers) + "], got " + S(opts.tap_layer));
  if (opts.num_tap < 0 || (opts.num_tap > 0 && (!opts.tap_rows || opts.tap_layer < 0)))
    return Status::Invalid(std::string(fn) + ": tapRows need a tapLayer");
  Impl& I = *impl_;
  I.has_cache = false;
  I.backward_ready = false;
  VP_RETURN_IF_ERROR(I.run_forward(*this, batch, true, fn));
  const int64_t N = I.layout.rows, d = cfg_.width;
  for (int64_t i = 0; i < opts.num_tap; ++i)
    if (opts.tap_rows[i] < 0 || opts.tap_rows[i] >= N) {
      I.has_cache = false;
      return Status::OutOfRange(std::string(fn) + ": tapRows[" + S(i) + "] = " + S(opts.tap_rows[i]) +
                                " must be a packed row in [0, " + S(N) + ")");
    }
  I.tap_layer = opts.tap_layer;
  I.tap_rows.assign(opts.tap_rows, opts.tap_rows + opts.num_tap);
  res->loss = I.loss;
  res->count = I.count;
  res->tap.assign(static_cast<size_t>(opts.num_tap * d), 0.0f);
  if (opts.num_tap > 0) {
    VP_RETURN_IF_ERROR(I.ops.upload(I.d_tap_rows, I.tap_rows));
    VP_RETURN_IF_ERROR(I.ops.alloc(I.dtap, opts.num_tap * d));
    VP_RETURN_IF_ERROR(I.ops.rows_gather(I.xs[static_cast<size_t>(opts.tap_layer)].data(), I.d_tap_rows.data(),
                                         opts.num_tap, d, I.dtap.data()));
    VP_RETURN_IF_ERROR(I.ops.to_host(res->tap.data(), I.dtap.data(), opts.num_tap * d));
  }
  res->token_logprobs.clear();
  if (opts.want_logprobs) {
    res->token_logprobs.assign(static_cast<size_t>(batch.num_text), 0.0f);
    for (size_t r = 0; r < I.head_row.size(); ++r)
      res->token_logprobs[static_cast<size_t>(I.head_text[r])] = I.h_tgt[r] - I.h_lse[r];
  }
  res->layout = I.layout;
  I.backward_ready = opts.for_backward;
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Backward

Status VideoLM::backward(float grad_loss, const float* dtap, const float* dlogprobs, bool accumulate) {
  const char* fn = "VideoLM.backward";
  Impl& I = *impl_;
  if (!I.has_cache || !I.backward_ready)
    return Status::Invalid(std::string(fn) + ": call forward() (with forBackward) on this batch first");
  if (!std::isfinite(grad_loss)) return Status::Invalid(std::string(fn) + ": gradLoss must be finite");
  I.backward_ready = false;  // the head's logits are overwritten by their gradient below
  const detail::ModelOps& ops = I.ops;
  const VideoLMConfig& c = cfg_;
  const int64_t N = I.layout.rows, d = c.width, H = c.heads, Hkv = c.kv_heads, D = c.head_dim(), F = c.ffn_dim();
  const int64_t kvd = Hkv * D, V = c.vocab, Lc = c.layers;
  float* g = nullptr;
  VP_RETURN_IF_ERROR(I.state(I.g, num_params_, &g));
  if (!accumulate) VP_RETURN_IF_ERROR(ops.zero(g, num_params_));
  const float* w = I.w.data();
  VP_RETURN_IF_ERROR(ops.zeros(I.dx, N * d));
  VP_RETURN_IF_ERROR(ops.alloc_all({{&I.dtmp, N * d}, {&I.dact, N * F}, {&I.dgu, N * 2 * F}, {&I.dn, N * d},
                                    {&I.datt, N * d}, {&I.dq, N * d}, {&I.dk, N * kvd}, {&I.dv, N * kvd}}));
  float* dx = I.dx.data();
  // Head: dlogits = coef_r * (softmax - onehot), in place of the logits.
  const int64_t R = static_cast<int64_t>(I.head_row.size());
  if (R > 0) {
    std::vector<float> coef(static_cast<size_t>(R));
    bool any = false;
    for (int64_t r = 0; r < R; ++r) {
      double cr = I.count > 0 ? static_cast<double>(grad_loss) / static_cast<double>(I.count) : 0.0;
      if (dlogprobs) cr -= static_cast<double>(dlogprobs[I.head_text[r]]);
      coef[r] = static_cast<float>(cr);
      any = any || cr != 0.0;
    }
    if (any) {
      float* dl = I.logits.data();
      VP_RETURN_IF_ERROR(ops.upload(I.coef, coef));
      VP_RETURN_IF_ERROR(ops.softmax_xent_grad(dl, I.d_head_tgt.data(), I.hlse.data(), I.coef.data(), R, V));
      VP_RETURN_IF_ERROR(ops.alloc(I.dhn, R * d));
      VP_RETURN_IF_ERROR(ops.alloc(I.dhx, R * d));
      VP_RETURN_IF_ERROR(ops.mm_nn(dl, w + I.o_head, R, d, V, I.dhn.data(), 0.0f));
      VP_RETURN_IF_ERROR(ops.mm_tn_acc(dl, I.hn.data(), V, d, R, g + I.o_head));
      VP_RETURN_IF_ERROR(ops.rmsnorm_backward(I.dhn.data(), I.hx.data(), w + I.o_final_norm, I.hrstd.data(), R, d,
                                              c.norm_eps, I.dhx.data(), g + I.o_final_norm, true));
      VP_RETURN_IF_ERROR(ops.rows_scatter_add(I.dhx.data(), I.d_head_row.data(), R, d, dx));
    }
  }
  const int64_t T = static_cast<int64_t>(I.tap_rows.size());
  const bool has_tap = dtap && T > 0;
  if (has_tap) VP_RETURN_IF_ERROR(ops.upload(I.dtap, dtap, T * d));
  auto add_tap = [&](int64_t after) -> Status {
    if (!has_tap || I.tap_layer != after) return Status::Ok();
    return ops.rows_scatter_add(I.dtap.data(), I.d_tap_rows.data(), T, d, dx);
  };
  float *dtmp = I.dtmp.data(), *dact = I.dact.data(), *dgu = I.dgu.data(), *dn = I.dn.data(), *datt = I.datt.data();
  float *dq = I.dq.data(), *dk = I.dk.data(), *dv = I.dv.data();
  const int32_t* pos = I.d_positions.data();
  for (int64_t l = Lc - 1; l >= 0; --l) {
    VP_RETURN_IF_ERROR(add_tap(l + 1));
    const LayerOffsets& o = I.lo[static_cast<size_t>(l)];
    const LayerCache& L = I.cache[static_cast<size_t>(l)];
    const float* x_in = I.xs[static_cast<size_t>(l)].data();
    // MLP: x_out = xmid + act · Wdown^T
    VP_RETURN_IF_ERROR(ops.mm_nn(dx, w + o.wdown, N, F, d, dact, 0.0f));
    VP_RETURN_IF_ERROR(ops.mm_tn_acc(dx, L.act.data(), d, F, N, g + o.wdown));
    VP_RETURN_IF_ERROR(ops.swiglu_backward(dact, L.gu.data(), L.gu.data() + F, N, F, 2 * F, dgu, dgu + F));
    VP_RETURN_IF_ERROR(ops.mm_nn(dgu, w + o.wgu, N, d, 2 * F, dn, 0.0f));
    VP_RETURN_IF_ERROR(ops.mm_tn_acc(dgu, L.n2.data(), 2 * F, d, N, g + o.wgu));
    VP_RETURN_IF_ERROR(ops.rmsnorm_backward(dn, L.xmid.data(), w + o.mlp_norm, L.rstd2.data(), N, d, c.norm_eps, dtmp,
                                            g + o.mlp_norm, true));
    VP_RETURN_IF_ERROR(ops.add_inplace(dx, dtmp, N * d));  // dx = d xmid
    // Attention: xmid = x_in + att · Wo^T
    VP_RETURN_IF_ERROR(ops.mm_nn(dx, w + o.wo, N, d, d, datt, 0.0f));
    VP_RETURN_IF_ERROR(ops.mm_tn_acc(dx, L.att.data(), d, d, N, g + o.wo));
    VP_RETURN_IF_ERROR(ops.attention_backward(datt, L.q.data(), L.k.data(), L.v.data(), L.att.data(), L.lse.data(), N,
                                              H, Hkv, D, I.layout.cu_seqlens, dq, dk, dv));
    VP_RETURN_IF_ERROR(ops.rope_apply(dq, pos, N, H, D, c.rope_theta, true, dq));
    VP_RETURN_IF_ERROR(ops.rope_apply(dk, pos, N, Hkv, D, c.rope_theta, true, dk));
    VP_RETURN_IF_ERROR(ops.mm_nn(dq, w + o.wq, N, d, d, dn, 0.0f));
    VP_RETURN_IF_ERROR(ops.mm_nn(dk, w + o.wk, N, d, kvd, dn, 1.0f));
    VP_RETURN_IF_ERROR(ops.mm_nn(dv, w + o.wv, N, d, kvd, dn, 1.0f));
    VP_RETURN_IF_ERROR(ops.mm_tn_acc(dq, L.n1.data(), d, d, N, g + o.wq));
    VP_RETURN_IF_ERROR(ops.mm_tn_acc(dk, L.n1.data(), kvd, d, N, g + o.wk));
    VP_RETURN_IF_ERROR(ops.mm_tn_acc(dv, L.n1.data(), kvd, d, N, g + o.wv));
    VP_RETURN_IF_ERROR(ops.rmsnorm_backward(dn, x_in, w + o.attn_norm, L.rstd1.data(), N, d, c.norm_eps, dtmp,
                                            g + o.attn_norm, true));
    VP_RETURN_IF_ERROR(ops.add_inplace(dx, dtmp, N * d));  // dx = d x_in
  }
  VP_RETURN_IF_ERROR(add_tap(0));
  // Embeddings: text rows summed per distinct id into tok_embed, visual rows per
  // visual token into the vision encoder (both in packed-row order).
  const int64_t U = static_cast<int64_t>(I.tok_ids.size());
  if (U > 0) {
    VP_RETURN_IF_ERROR(ops.alloc(I.dtext, U * d));
    VP_RETURN_IF_ERROR(ops.rows_csr_sum(dx, I.d_tok_start.data(), I.d_tok_order.data(), U, d, I.dtext.data(), false));
    VP_RETURN_IF_ERROR(ops.rows_scatter_add(I.dtext.data(), I.d_tok_ids.data(), U, d, g + I.o_tok));
  }
  const int64_t nvis = I.num_vis;
  if (nvis > 0) {
    VP_RETURN_IF_ERROR(ops.alloc(I.dvis, nvis * d));
    VP_RETURN_IF_ERROR(
        ops.rows_csr_sum(dx, I.d_vis_start.data(), I.d_vis_order.data(), nvis, d, I.dvis.data(), false));
    VP_RETURN_IF_ERROR(ops.mm_tn_acc(I.dvis.data(), I.patches.data(), d, c.patch_features(), nvis, g + I.o_patch_w));
    VP_RETURN_IF_ERROR(ops.vision_pos_backward(I.dvis.data(), nvis, c.patches_per_frame(), c.frames, d,
                                               g + I.o_patch_b, nullptr, g + I.o_patch_pos));
    // Frame positions: dframe_pos[f] += the rows that took frame_pos[f], in packed-row order.
    VP_RETURN_IF_ERROR(ops.rows_csr_sum(dx, I.d_fpos_start.data(), I.d_fpos_order.data(), c.frames, d,
                                        g + I.o_frame_pos, true));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Optimizer

Status VideoLM::optimizer_step(const VideoLMStepOptions& o, VideoLMStepResult* res) {
  const char* fn = "VideoLM.step";
  if (!(o.lr >= 0.0) || !std::isfinite(o.lr)) return Status::Invalid(std::string(fn) + ": lr must be >= 0");
  if (!(o.grad_scale > 0.0) || !std::isfinite(o.grad_scale))
    return Status::Invalid(std::string(fn) + ": gradScale must be > 0");
  Impl& I = *impl_;
  float *g = nullptr, *mm = nullptr, *vv = nullptr;
  VP_RETURN_IF_ERROR(I.state(I.g, num_params_, &g));
  VP_RETURN_IF_ERROR(I.state(I.m, num_params_, &mm));
  VP_RETURN_IF_ERROR(I.state(I.v, num_params_, &vv));
  double ss = 0.0;
  VP_RETURN_IF_ERROR(I.ops.sum_squares(g, num_params_, &ss));
  const double norm = std::sqrt(ss) * o.grad_scale;
  if (!std::isfinite(norm)) {
    // A NaN or infinite gradient (the loss diverged): the step is skipped, as
    // PyTorch's GradScaler skips one; parameters, moments and the step count
    // stay as they were, and the caller sees the norm.
    if (res) {
      res->grad_norm = norm;
      res->lr = o.lr;
      res->step = step_;
    }
    return Status::Ok();
  }
  const double clip = clip_scale(norm, o.max_grad_norm);
  double lr = o.lr;
  if (o.total_steps > 0) {
    LrSchedule s;
    s.base_lr = o.lr;
    s.min_lr = o.min_lr;
    s.warmup_steps = o.warmup_steps;
    s.total_steps = o.total_steps;
    lr = lr_at(s, step_);
  }
  AdamWConfig a;
  a.lr = static_cast<float>(lr);
  a.beta1 = o.beta1;
  a.beta2 = o.beta2;
  a.eps = o.eps;
  a.step = step_ + 1;
  a.grad_scale = static_cast<float>(o.grad_scale * clip);
  float* w = I.w.data();
  for (const VideoLMParam& p : params_) {
    a.weight_decay = p.decay ? o.weight_decay : 0.0f;
    VP_RETURN_IF_ERROR(I.ops.adamw_step(w + p.offset, g + p.offset, mm + p.offset, vv + p.offset, p.numel, a));
  }
  ++step_;
  if (res) {
    res->grad_norm = norm;
    res->lr = lr;
    res->step = step_;
  }
  I.has_cache = false;
  return Status::Ok();
}

}  // namespace vp
