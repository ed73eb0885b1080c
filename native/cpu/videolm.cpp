// The built-in VideoLM on the CPU: config, parameters, forward, backward, optimizer step.
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
#include "vp/rng.h"
#include "vp/thread_pool.h"

namespace vp {

namespace {
std::string S(int64_t v) { return std::to_string(v); }
}  // namespace

int64_t VideoLMConfig::ffn_dim() const {
  if (ffn > 0) return ffn;
  const double h = mlp_ratio * static_cast<double>(width);
  const int64_t r = static_cast<int64_t>(std::ceil(h / 32.0)) * 32;
  return std::max<int64_t>(r, 32);
}

Status videolm_validate_config(const VideoLMConfig& c) {
  auto bad = [](const std::string& m) { return Status::Invalid("VideoLM config: " + m); };
  if (c.patch_size < 1) return bad("patchSize must be >= 1, got " + S(c.patch_size));
  if (c.image_size < c.patch_size || c.image_size % c.patch_size != 0)
    return bad("imageSize must be a positive multiple of patchSize=" + S(c.patch_size) + ", got " + S(c.image_size));
  if (c.image_size > 4096) return bad("imageSize must be <= 4096, got " + S(c.image_size));
  if (c.frames < 1 || c.frames > 4096) return bad("frames must be in [1, 4096], got " + S(c.frames));
  if (c.width < 2 || c.width > 16384) return bad("width must be in [2, 16384], got " + S(c.width));
  if (c.layers < 1 || c.layers > 256) return bad("layers must be in [1, 256], got " + S(c.layers));
  if (c.heads < 1 || c.width % c.heads != 0)
    return bad("heads must divide width=" + S(c.width) + ", got " + S(c.heads));
  if (c.head_dim() % 2 != 0 || c.head_dim() > 256)
    return bad("the head dim width/heads must be even and <= 256, got " + S(c.head_dim()));
  if (c.kv_heads < 1 || c.heads % c.kv_heads != 0)
    return bad("kvHeads must divide heads=" + S(c.heads) + ", got " + S(c.kv_heads));
  if (c.ffn < 0 || c.ffn > 1 << 20) return bad("ffn must be in [0, 2^20], got " + S(c.ffn));
  if (c.ffn == 0 && !(c.mlp_ratio > 0.0 && c.mlp_ratio <= 64.0))
    return bad("mlpRatio must be in (0, 64], got " + std::to_string(c.mlp_ratio));
  if (c.vocab < 2 || c.vocab > (1 << 24)) return bad("vocab must be in [2, 2^24], got " + S(c.vocab));
  if (c.max_seq < 1 || c.max_seq > (1 << 24)) return bad("maxSeq must be in [1, 2^24], got " + S(c.max_seq));
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

namespace {

struct InitSpec {
  int kind;  // 0 normal(std), 1 ones, 2 zeros
  float std;
};

}  // namespace

Status VideoLM::create(const VideoLMConfig& cfg, uint64_t seed, std::unique_ptr<VideoLM>* out) {
  VP_RETURN_IF_ERROR(videolm_validate_config(cfg));
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
  try {
    m->w_.assign(static_cast<size_t>(off), 0.0f);
    m->impl_ = std::make_unique<Impl>();
  } catch (const std::bad_alloc&) {
    return Status::Internal("VideoLM: out of memory allocating " + S(off) + " parameters");
  }
  m->impl_->index(*m);
  VP_RETURN_IF_ERROR(m->init(seed));
  *out = std::move(m);
  return Status::Ok();
}

Status VideoLM::init(uint64_t seed) {
  const float base = 0.02f;
  const float proj = base / std::sqrt(2.0f * static_cast<float>(cfg_.layers));
  for (size_t i = 0; i < params_.size(); ++i) {
    const VideoLMParam& p = params_[i];
    float* dst = w_.data() + p.offset;
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
  step_ = 0;
  if (!m_.empty()) std::fill(m_.begin(), m_.end(), 0.0f);
  if (!v_.empty()) std::fill(v_.begin(), v_.end(), 0.0f);
  return Status::Ok();
}

float* VideoLM::grad_data() {
  if (g_.size() != w_.size()) g_.assign(w_.size(), 0.0f);
  return g_.data();
}
float* VideoLM::adam_m() {
  if (m_.size() != w_.size()) m_.assign(w_.size(), 0.0f);
  return m_.data();
}
float* VideoLM::adam_v() {
  if (v_.size() != w_.size()) v_.assign(w_.size(), 0.0f);
  return v_.data();
}

Status VideoLM::clone(std::unique_ptr<VideoLM>* out) const {
  std::unique_ptr<VideoLM> m(new VideoLM());
  m->cfg_ = cfg_;
  m->params_ = params_;
  try {
    m->w_ = w_;
    m->impl_ = std::make_unique<Impl>();
  } catch (const std::bad_alloc&) {
    return Status::Internal("VideoLM.clone: out of memory");
  }
  m->impl_->index(*m);
  m->step_ = step_;
  *out = std::move(m);
  return Status::Ok();
}

Status VideoLM::zero_grad() {
  float* g = grad_data();
  std::memset(g, 0, g_.size() * sizeof(float));
  return Status::Ok();
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

namespace detail {

// C[M,N] (beta)= A[M,K] · B[N,K]^T
Status mm_nt(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* c, float beta) {
  if (m == 0 || n == 0) return Status::Ok();
  GemmArgs g;
  g.trans_b = true;
  g.m = m; g.n = n; g.k = k;
  g.a = a; g.lda = k; g.b = b; g.ldb = k;
  g.c = c; g.ldc = n; g.beta = beta;
  return sgemm(g);
}
// C[M,N] (beta)= A[M,K] · B[K,N]
Status mm_nn(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* c, float beta) {
  if (m == 0 || n == 0) return Status::Ok();
  GemmArgs g;
  g.m = m; g.n = n; g.k = k;
  g.a = a; g.lda = k; g.b = b; g.ldb = n;
  g.c = c; g.ldc = n; g.beta = beta;
  return sgemm(g);
}
// C[M,N] += A[K,M]^T · B[K,N]   (weight gradients: dW[out,in] += dY^T X)
Status mm_tn_acc(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* c) {
  if (m == 0 || n == 0 || k == 0) return Status::Ok();
  GemmArgs g;
  g.trans_a = true;
  g.m = m; g.n = n; g.k = k;
  g.a = a; g.lda = m; g.b = b; g.ldb = n;
  g.c = c; g.ldc = n; g.beta = 1.0f;
  return sgemm(g);
}

}  // namespace detail

using detail::mm_nn;
using detail::mm_nt;
using detail::mm_tn_acc;

// Validates and packs a batch: layout, row sources.
Status VideoLM::Impl::pack(const VideoLMConfig& cfg, const VideoLMBatch& b, const char* fn) {
  const std::string f(fn);
  if (b.num_videos < 0) return Status::Invalid(f + ": numVideos must be >= 0");
  if (b.num_text < 0) return Status::Invalid(f + ": text length must be >= 0");
  if (b.num_text > 0 && !b.text) return Status::Invalid(f + ": text is null");
  if (b.num_videos > 0 && !b.videos_u8 && !b.videos_f32) return Status::Invalid(f + ": videos is null");
  if (b.sequences.empty()) return Status::Invalid(f + ": sequences must hold at least one sequence");
  const int64_t V = cfg.vocab, P = cfg.patches_per_frame(), Fr = cfg.frames;
  for (int64_t i = 0; i < b.num_text; ++i)
    if (b.text[i] < 0 || b.text[i] >= V)
      return Status::OutOfRange(f + ": text[" + S(i) + "] = " + S(b.text[i]) + " is not a token id in [0, " + S(V) + ")");
  if (b.targets)
    for (int64_t i = 0; i < b.num_text; ++i)
      if (b.targets[i] < -1 || b.targets[i] >= V)
        return Status::OutOfRange(f + ": targets[" + S(i) + "] = " + S(b.targets[i]) + " must be -1 or in [0, " +
                                  S(V) + ")");
  layout = VideoLMLayout();
  layout.cu_seqlens.push_back(0);
  layout.text_row.assign(static_cast<size_t>(b.num_text), -1);
  src.clear();
  int64_t rows = 0;
  for (size_t s = 0; s < b.sequences.size(); ++s) {
    int64_t len = 0;
    for (size_t j = 0; j < b.sequences[s].size(); ++j) {
      const VideoLMSegment& g = b.sequences[s][j];
      const std::string where = f + ": sequences[" + S(s) + "][" + S(j) + "]";
      layout.segment_start.push_back(rows + len);
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
        }
        for (int64_t o = 0; o < nf; ++o) {
          const int64_t sf = g.frames ? g.frames[o] : o;
          for (int64_t q = 0; q < P; ++q) src.push_back((g.video * Fr + sf) * P + q);
        }
        len += nf * P;
      } else {
        if (g.text_start < 0 || g.text_len < 0 || g.text_start + g.text_len > b.num_text)
          return Status::OutOfRange(where + ".text = [" + S(g.text_start) + ", " + S(g.text_len) +
                                    "] must lie inside the text of length " + S(b.num_text));
        const int64_t nvis = b.num_videos * Fr * P;
        for (int64_t t = 0; t < g.text_len; ++t) {
          layout.text_row[static_cast<size_t>(g.text_start + t)] = static_cast<int32_t>(rows + len + t);
          src.push_back(nvis + g.text_start + t);
        }
        len += g.text_len;
      }
      if (len > cfg.max_seq)
        return Status::OutOfRange(f + ": sequences[" + S(s) + "] has more than maxSeq=" + S(cfg.max_seq) + " tokens");
    }
    for (int64_t t = 0; t < len; ++t) layout.positions.push_back(static_cast<int32_t>(t));
    rows += len;
    layout.cu_seqlens.push_back(static_cast<int32_t>(rows));
  }
  if (rows == 0) return Status::Invalid(f + ": the batch has no tokens");
  if (rows > INT32_MAX / 2) return Status::Invalid(f + ": too many tokens");
  layout.rows = rows;
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
  num_videos = b.num_videos;
  text_ids.assign(b.text, b.text + b.num_text);
  return Status::Ok();
}

// Vision encoder for every video of the batch: vis [nV*F*P, d].
Status VideoLM::Impl::vision_forward(const VideoLM& m, const VideoLMBatch& b) {
  const VideoLMConfig& c = m.cfg_;
  const int64_t P = c.patches_per_frame(), Fr = c.frames, d = c.width, pf = c.patch_features();
  const int64_t n = b.num_videos * Fr * P;
  patches.resize(static_cast<size_t>(n * pf));
  vis.resize(static_cast<size_t>(n * d));
  if (n == 0) return Status::Ok();
  if (b.videos_u8)
    VP_RETURN_IF_ERROR(patchify_u8(b.videos_u8, b.num_videos * Fr, c.image_size, c.image_size, c.patch_size, patches.data()));
  else
    VP_RETURN_IF_ERROR(patchify_f32(b.videos_f32, b.num_videos * Fr, c.image_size, c.image_size, c.patch_size, patches.data()));
  const float* w = m.w_.data();
  VP_RETURN_IF_ERROR(linear_forward(patches.data(), w + o_patch_w, w + o_patch_b, n, pf, d, vis.data()));
  const float* fp = w + o_frame_pos;
  const float* pp = w + o_patch_pos;
  float* out = vis.data();
  parallel_for(n, 64, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t f = (r / P) % Fr, q = r % P;
      float* o = out + r * d;
      const float* a = fp + f * d;
      const float* bb = pp + q * d;
      for (int64_t j = 0; j < d; ++j) o[j] += a[j] + bb[j];
    }
  });
  return Status::Ok();
}

// Embeds the packed rows into x0 (xs[0]).
void VideoLM::Impl::embed_rows(const VideoLM& m, const VideoLMBatch& b, float* x0) {
  const int64_t d = m.cfg_.width, N = layout.rows;
  const int64_t nvis = static_cast<int64_t>(vis.size()) / d;
  const float* tok = m.w_.data() + o_tok;
  parallel_for(N, 64, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t s = src[static_cast<size_t>(r)];
      const float* from = s < nvis ? vis.data() + s * d : tok + static_cast<int64_t>(b.text[s - nvis]) * d;
      std::memcpy(x0 + r * d, from, static_cast<size_t>(d) * sizeof(float));
    }
  });
}

// One decoder layer forward over N rows; writes the cache and x_out.
Status VideoLM::Impl::layer_forward(const VideoLM& m, int64_t l, const float* x, float* x_out) {
  const VideoLMConfig& c = m.cfg_;
  const int64_t N = layout.rows, d = c.width, H = c.heads, Hkv = c.kv_heads, D = c.head_dim(), F = c.ffn_dim();
  const int64_t kvd = Hkv * D;
  const float* w = m.w_.data();
  const LayerOffsets& o = lo[static_cast<size_t>(l)];
  LayerCache& L = cache[static_cast<size_t>(l)];
  L.n1.resize(N * d); L.rstd1.resize(N); L.q.resize(N * d); L.k.resize(N * kvd); L.v.resize(N * kvd);
  L.att.resize(N * d); L.lse.resize(H * N); L.xmid.resize(N * d); L.n2.resize(N * d); L.rstd2.resize(N);
  L.gu.resize(N * 2 * F); L.act.resize(N * F);
  VP_RETURN_IF_ERROR(rmsnorm_forward(x, w + o.attn_norm, N, d, c.norm_eps, L.n1.data(), L.rstd1.data()));
  VP_RETURN_IF_ERROR(mm_nt(L.n1.data(), w + o.wq, N, d, d, L.q.data(), 0.0f));
  VP_RETURN_IF_ERROR(mm_nt(L.n1.data(), w + o.wk, N, kvd, d, L.k.data(), 0.0f));
  VP_RETURN_IF_ERROR(mm_nt(L.n1.data(), w + o.wv, N, kvd, d, L.v.data(), 0.0f));
  VP_RETURN_IF_ERROR(rope_apply(L.q.data(), layout.positions.data(), N, H, D, c.rope_theta, false, L.q.data()));
  VP_RETURN_IF_ERROR(rope_apply(L.k.data(), layout.positions.data(), N, Hkv, D, c.rope_theta, false, L.k.data()));
  AttentionOptions ao;
  ao.cu_seqlens_q = layout.cu_seqlens.data();
  ao.batch = static_cast<int64_t>(layout.cu_seqlens.size()) - 1;
  ao.causal = true;
  VP_RETURN_IF_ERROR(attention(TensorView(L.q.data(), {N, H, D}), TensorView(L.k.data(), {N, Hkv, D}),
                               TensorView(L.v.data(), {N, Hkv, D}), ao, TensorView(L.att.data(), {N, H, D}),
                               TensorView(L.lse.data(), {H, N})));
  // xmid = x + att · Wo^T
  std::memcpy(L.xmid.data(), x, static_cast<size_t>(N * d) * sizeof(float));
  VP_RETURN_IF_ERROR(mm_nt(L.att.data(), w + o.wo, N, d, d, L.xmid.data(), 1.0f));
  VP_RETURN_IF_ERROR(rmsnorm_forward(L.xmid.data(), w + o.mlp_norm, N, d, c.norm_eps, L.n2.data(), L.rstd2.data()));
  VP_RETURN_IF_ERROR(mm_nt(L.n2.data(), w + o.wgu, N, 2 * F, d, L.gu.data(), 0.0f));
  VP_RETURN_IF_ERROR(swiglu_forward(L.gu.data(), L.gu.data() + F, N, F, 2 * F, L.act.data()));
  std::memcpy(x_out, L.xmid.data(), static_cast<size_t>(N * d) * sizeof(float));
  VP_RETURN_IF_ERROR(mm_nt(L.act.data(), w + o.wdown, N, d, F, x_out, 1.0f));
  return Status::Ok();
}

Status VideoLM::Impl::run_forward(const VideoLM& m, const VideoLMBatch& b, bool with_head, const char* fn) {
  VP_RETURN_IF_ERROR(pack(m.cfg_, b, fn));
  const int64_t d = m.cfg_.width, N = layout.rows, Lc = m.cfg_.layers;
  try {
    cache.resize(static_cast<size_t>(Lc));
    xs.resize(static_cast<size_t>(Lc + 1));
    for (auto& x : xs) x.resize(static_cast<size_t>(N * d));
  } catch (const std::bad_alloc&) {
    return Status::Internal(std::string(fn) + ": out of memory for the activations of " + S(N) + " tokens");
  }
  VP_RETURN_IF_ERROR(vision_forward(m, b));
  embed_rows(m, b, xs[0].data());
  for (int64_t l = 0; l < Lc; ++l)
    VP_RETURN_IF_ERROR(layer_forward(m, l, xs[static_cast<size_t>(l)].data(), xs[static_cast<size_t>(l + 1)].data()));
  has_cache = true;
  loss = 0.0;
  count = 0;
  if (!with_head) return Status::Ok();
  // Head over target rows.
  const int64_t R = static_cast<int64_t>(head_row.size()), V = m.cfg_.vocab;
  const float* w = m.w_.data();
  hx.resize(R * d); hn.resize(R * d); hrstd.resize(R); logits.resize(R * V); hlse.resize(R);
  const float* xf = xs[static_cast<size_t>(Lc)].data();
  for (int64_t r = 0; r < R; ++r) std::memcpy(hx.data() + r * d, xf + head_row[r] * d, d * sizeof(float));
  if (R > 0) {
    VP_RETURN_IF_ERROR(rmsnorm_forward(hx.data(), w + o_final_norm, R, d, m.cfg_.norm_eps, hn.data(), hrstd.data()));
    VP_RETURN_IF_ERROR(mm_nt(hn.data(), w + o_head, R, V, d, logits.data(), 0.0f));
    float l = 0.0f;
    int64_t cnt = 0;
    VP_RETURN_IF_ERROR(cross_entropy_forward(logits.data(), head_tgt.data(), R, V, &l, hlse.data(), &cnt));
    // Recompute the mean in double from the per-row terms (more precise for gradient checks).
    double acc = 0.0;
    for (int64_t r = 0; r < R; ++r)
      acc += static_cast<double>(hlse[r]) - static_cast<double>(logits[r * V + head_tgt[r]]);
    loss = cnt > 0 ? acc / static_cast<double>(cnt) : 0.0;
    count = cnt;
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
    const float* h = I.xs[static_cast<size_t>(opts.tap_layer)].data();
    for (int64_t i = 0; i < opts.num_tap; ++i)
      std::memcpy(res->tap.data() + i * d, h + static_cast<int64_t>(opts.tap_rows[i]) * d, d * sizeof(float));
  }
  res->token_logprobs.clear();
  if (opts.want_logprobs) {
    res->token_logprobs.assign(static_cast<size_t>(batch.num_text), 0.0f);
    const int64_t V = cfg_.vocab;
    for (size_t r = 0; r < I.head_row.size(); ++r)
      res->token_logprobs[static_cast<size_t>(I.head_text[r])] =
          I.logits[r * V + I.head_tgt[r]] - I.hlse[r];
  }
  res->layout = I.layout;
  I.num_text = batch.num_text;
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
  const VideoLMConfig& c = cfg_;
  const int64_t N = I.layout.rows, d = c.width, H = c.heads, Hkv = c.kv_heads, D = c.head_dim(), F = c.ffn_dim();
  const int64_t kvd = Hkv * D, V = c.vocab, Lc = c.layers;
  float* g = grad_data();
  if (!accumulate) std::memset(g, 0, g_.size() * sizeof(float));
  const float* w = w_.data();
  std::vector<float> dx(static_cast<size_t>(N * d), 0.0f), dtmp(static_cast<size_t>(N * d));
  // Head.
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
      // dlogits = coef_r * (softmax - onehot), in place of the logits.
      float* dl = I.logits.data();
      VP_RETURN_IF_ERROR(cross_entropy_backward(dl, I.head_tgt.data(), I.hlse.data(), R, V, static_cast<float>(R), dl));
      parallel_for(R, 1, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
          float* row = dl + r * V;
          const float cr = coef[r];
          for (int64_t j = 0; j < V; ++j) row[j] *= cr;
        }
      });
      std::vector<float> dhn(static_cast<size_t>(R * d)), dhx(static_cast<size_t>(R * d));
      VP_RETURN_IF_ERROR(mm_nn(dl, w + I.o_head, R, d, V, dhn.data(), 0.0f));
      VP_RETURN_IF_ERROR(mm_tn_acc(dl, I.hn.data(), V, d, R, g + I.o_head));
      VP_RETURN_IF_ERROR(rmsnorm_backward(dhn.data(), I.hx.data(), w + I.o_final_norm, I.hrstd.data(), R, d, c.norm_eps,
                                          dhx.data(), g + I.o_final_norm, true));
      for (int64_t r = 0; r < R; ++r) {
        float* dst = dx.data() + static_cast<int64_t>(I.head_row[r]) * d;
        const float* s = dhx.data() + r * d;
        for (int64_t j = 0; j < d; ++j) dst[j] += s[j];
      }
    }
  }
  auto add_tap = [&](int64_t after) {
    if (!dtap || I.tap_layer != after) return;
    for (size_t i = 0; i < I.tap_rows.size(); ++i) {
      float* dst = dx.data() + static_cast<int64_t>(I.tap_rows[i]) * d;
      const float* s = dtap + static_cast<int64_t>(i) * d;
      for (int64_t j = 0; j < d; ++j) dst[j] += s[j];
    }
  };
  std::vector<float> dact(static_cast<size_t>(N * F)), dgu(static_cast<size_t>(N * 2 * F)), dn(static_cast<size_t>(N * d));
  std::vector<float> datt(static_cast<size_t>(N * d)), dq(static_cast<size_t>(N * d)), dk(static_cast<size_t>(N * kvd)),
      dv(static_cast<size_t>(N * kvd));
  for (int64_t l = Lc - 1; l >= 0; --l) {
    add_tap(l + 1);
    const LayerOffsets& o = I.lo[static_cast<size_t>(l)];
    const LayerCache& L = I.cache[static_cast<size_t>(l)];
    const float* x_in = I.xs[static_cast<size_t>(l)].data();
    // MLP: x_out = xmid + act · Wdown^T
    VP_RETURN_IF_ERROR(mm_nn(dx.data(), w + o.wdown, N, F, d, dact.data(), 0.0f));
    VP_RETURN_IF_ERROR(mm_tn_acc(dx.data(), L.act.data(), d, F, N, g + o.wdown));
    VP_RETURN_IF_ERROR(swiglu_backward(dact.data(), L.gu.data(), L.gu.data() + F, N, F, 2 * F, dgu.data(), dgu.data() + F));
    VP_RETURN_IF_ERROR(mm_nn(dgu.data(), w + o.wgu, N, d, 2 * F, dn.data(), 0.0f));
    VP_RETURN_IF_ERROR(mm_tn_acc(dgu.data(), L.n2.data(), 2 * F, d, N, g + o.wgu));
    VP_RETURN_IF_ERROR(rmsnorm_backward(dn.data(), L.xmid.data(), w + o.mlp_norm, L.rstd2.data(), N, d, c.norm_eps,
                                        dtmp.data(), g + o.mlp_norm, true));
    VP_RETURN_IF_ERROR(add_inplace(dx.data(), dtmp.data(), N * d));  // dx = d xmid
    // Attention: xmid = x_in + att · Wo^T
    VP_RETURN_IF_ERROR(mm_nn(dx.data(), w + o.wo, N, d, d, datt.data(), 0.0f));
    VP_RETURN_IF_ERROR(mm_tn_acc(dx.data(), L.att.data(), d, d, N, g + o.wo));
    AttentionOptions ao;
    ao.cu_seqlens_q = I.layout.cu_seqlens.data();
    ao.batch = static_cast<int64_t>(I.layout.cu_seqlens.size()) - 1;
    ao.causal = true;
    VP_RETURN_IF_ERROR(attention_backward(
        TensorView(datt.data(), {N, H, D}), TensorView(const_cast<float*>(L.q.data()), {N, H, D}),
        TensorView(const_cast<float*>(L.k.data()), {N, Hkv, D}), TensorView(const_cast<float*>(L.v.data()), {N, Hkv, D}),
        TensorView(const_cast<float*>(L.att.data()), {N, H, D}), TensorView(const_cast<float*>(L.lse.data()), {H, N}), ao,
        TensorView(dq.data(), {N, H, D}), TensorView(dk.data(), {N, Hkv, D}), TensorView(dv.data(), {N, Hkv, D})));
    VP_RETURN_IF_ERROR(rope_apply(dq.data(), I.layout.positions.data(), N, H, D, c.rope_theta, true, dq.data()));
    VP_RETURN_IF_ERROR(rope_apply(dk.data(), I.layout.positions.data(), N, Hkv, D, c.rope_theta, true, dk.data()));
    VP_RETURN_IF_ERROR(mm_nn(dq.data(), w + o.wq, N, d, d, dn.data(), 0.0f));
    VP_RETURN_IF_ERROR(mm_nn(dk.data(), w + o.wk, N, d, kvd, dn.data(), 1.0f));
    VP_RETURN_IF_ERROR(mm_nn(dv.data(), w + o.wv, N, d, kvd, dn.data(), 1.0f));
    VP_RETURN_IF_ERROR(mm_tn_acc(dq.data(), L.n1.data(), d, d, N, g + o.wq));
    VP_RETURN_IF_ERROR(mm_tn_acc(dk.data(), L.n1.data(), kvd, d, N, g + o.wk));
    VP_RETURN_IF_ERROR(mm_tn_acc(dv.data(), L.n1.data(), kvd, d, N, g + o.wv));
    VP_RETURN_IF_ERROR(rmsnorm_backward(dn.data(), x_in, w + o.attn_norm, L.rstd1.data(), N, d, c.norm_eps, dtmp.data(),
                                        g + o.attn_norm, true));
    VP_RETURN_IF_ERROR(add_inplace(dx.data(), dtmp.data(), N * d));  // dx = d x_in
  }
  add_tap(0);
  // Embeddings: text rows into tok_embed, visual rows into the vision encoder.
  const int64_t nvis = static_cast<int64_t>(I.vis.size()) / d;
  std::vector<int32_t> ids;
  std::vector<float> dtext;
  std::vector<float> dvis(static_cast<size_t>(nvis * d), 0.0f);
  for (int64_t r = 0; r < N; ++r) {
    const int64_t s = I.src[static_cast<size_t>(r)];
    const float* from = dx.data() + r * d;
    if (s < nvis) {
      float* dst = dvis.data() + s * d;
      for (int64_t j = 0; j < d; ++j) dst[j] += from[j];
    } else {
      ids.push_back(I.text_ids[static_cast<size_t>(s - nvis)]);
      dtext.insert(dtext.end(), from, from + d);
    }
  }
  if (!ids.empty())
    VP_RETURN_IF_ERROR(embedding_backward(dtext.data(), ids.data(), static_cast<int64_t>(ids.size()), V, d, g + I.o_tok, true));
  if (nvis > 0) {
    const int64_t P = c.patches_per_frame(), Fr = c.frames;
    VP_RETURN_IF_ERROR(patch_embed_backward(dvis.data(), I.patches.data(), nvis, c.patch_features(), d, g + I.o_patch_w,
                                            g + I.o_patch_b, true));
    float* dfp = g + I.o_frame_pos;
    float* dpp = g + I.o_patch_pos;
    for (int64_t r = 0; r < nvis; ++r) {
      const int64_t f = (r / P) % Fr, q = r % P;
      const float* s = dvis.data() + r * d;
      for (int64_t j = 0; j < d; ++j) {
        dfp[f * d + j] += s[j];
        dpp[q * d + j] += s[j];
      }
    }
  }
  I.backward_ready = false;  // the logits were overwritten by their gradient
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Optimizer

Status VideoLM::optimizer_step(const VideoLMStepOptions& o, VideoLMStepResult* res) {
  const char* fn = "VideoLM.step";
  if (!(o.lr >= 0.0) || !std::isfinite(o.lr)) return Status::Invalid(std::string(fn) + ": lr must be >= 0");
  if (!(o.grad_scale > 0.0) || !std::isfinite(o.grad_scale))
    return Status::Invalid(std::string(fn) + ": gradScale must be > 0");
  float* g = grad_data();
  float* mm = adam_m();
  float* vv = adam_v();
  const int64_t n = num_params();
  double norm = 0.0;
  const float* gp = g;
  VP_RETURN_IF_ERROR(global_grad_norm(&gp, &n, 1, &norm));
  norm *= o.grad_scale;
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
  for (const VideoLMParam& p : params_) {
    a.weight_decay = p.decay ? o.weight_decay : 0.0f;
    VP_RETURN_IF_ERROR(adamw_step(w_.data() + p.offset, g + p.offset, mm + p.offset, vv + p.offset, p.numel, a));
  }
  ++step_;
  if (res) {
    res->grad_norm = norm;
    res->lr = lr;
    res->step = step_;
  }
  impl_->has_cache = false;
  return Status::Ok();
}

}  // namespace vp
