// vp_bench_train_step: training steps of the built-in VideoLM (vp/videolm.h,
// float32) on the CPU or CUDA, in tokens per second, for bench/gpu.sh (no Node).
//
//   sft <preset>: Trainer.sft's step without the contrastive head: forward (LM
//       loss over the caption's next tokens), backward, global-norm clipping,
//       AdamW (VideoLM::optimizer_step).
//   rl <preset>:  Trainer.rl's update (μ = 1) on B responses of R tokens after a
//       prompt: the frozen reference model's log-probs (forward, no activations
//       kept), the policy's log-probs (forward), the GRPO loss on the host
//       (vp::grpo_loss: 'dapo', ε 0.2, β 0.04, one advantage per response),
//       backward of its log-prob gradient, clipping, AdamW. The rollout
//       (generation) is not part of it.
//
// Batch: B sequences [video b: frames × patches tokens][T text tokens], random
// pixels and ids (seeded). tokens = B · (frames · patches + T) rows per step.
// Each step ends with host copies (loss, grad norm), so the host clock times it
// whole: the first step is the warm-up (its loss is `loss0`), then `reps` steps,
// the median.
//
// --io DIR: also writes DIR/<mode>-<preset>/ (meta.json, params.f32 = the
// initial flat parameters, videos.u8, text.i32, targets.i32) for the PyTorch
// peer (bench/peers/gpu_torch.py, train_step), which starts from the same
// parameters and reports its own first-step loss beside ours.
//
// Usage: vp_bench_train_step --device cpu|cuda [--dtype float32] [--quick|--full] [--io DIR]
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vp/grpo.h"
#include "vp/videolm.h"

namespace {

struct Case {
  std::string preset;
  int64_t B, T, R;  // R = 0: sft; else rl with R response tokens at the end of the T text tokens
};

vp::VideoLMStepOptions step_options() {
  vp::VideoLMStepOptions so;  // bench/train-step.ts's: lr 1e-4, wd 0.1, clip 1.0, β (0.9, 0.95), ε 1e-8
  so.lr = 1e-4;
  so.weight_decay = 0.1f;
  so.max_grad_norm = 1.0;
  so.beta1 = 0.9f;
  so.beta2 = 0.95f;
  so.eps = 1e-8f;
  return so;
}

template <typename T>
void write_raw(const std::string& path, const std::vector<T>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
}

std::string shape_json(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

// The peer's inputs; returns the folder.
std::string write_io(const std::string& root, const std::string& name, vp::VideoLM& m, const Case& c,
                     const std::vector<uint8_t>& videos, const std::vector<int32_t>& text,
                     const std::vector<int32_t>& targets, vpbench::Buffers& check) {
  const std::string dir = root + "/" + name;
  std::filesystem::create_directories(dir);
  std::vector<float> params(static_cast<size_t>(m.num_params()));
  check.check(m.get_buffer(vp::VideoLMBuffer::kParams, params.data()), "get_buffer");
  write_raw(dir + "/params.f32", params);
  write_raw(dir + "/videos.u8", videos);
  write_raw(dir + "/text.i32", text);
  write_raw(dir + "/targets.i32", targets);
  const vp::VideoLMConfig& g = m.config();
  const vp::VideoLMStepOptions so = step_options();
  std::string j = "{\"mode\":\"" + std::string(c.R ? "rl" : "sft") + "\",\"preset\":\"" + c.preset + "\",";
  j += "\"B\":" + std::to_string(c.B) + ",\"T\":" + std::to_string(c.T) + ",\"R\":" + std::to_string(c.R) + ",";
  char cfg[512];
  std::snprintf(cfg, sizeof cfg,
                "\"config\":{\"imageSize\":%lld,\"patchSize\":%lld,\"frames\":%lld,\"width\":%lld,\"layers\":%lld,"
                "\"heads\":%lld,\"kvHeads\":%lld,\"ffn\":%lld,\"vocab\":%lld,\"tied\":%s,\"ropeTheta\":%.9g,"
                "\"normEps\":%.9g},",
                (long long)g.image_size, (long long)g.patch_size, (long long)g.frames, (long long)g.width,
                (long long)g.layers, (long long)g.heads, (long long)g.kv_heads, (long long)g.ffn_dim(),
                (long long)g.vocab, g.tied ? "true" : "false", g.rope_theta, g.norm_eps);
  j += cfg;
  char opt[256];
  std::snprintf(opt, sizeof opt,
                "\"opt\":{\"lr\":%.9g,\"weightDecay\":%.9g,\"maxGradNorm\":%.9g,\"beta1\":%.9g,\"beta2\":%.9g,"
                "\"eps\":%.9g},\"grpo\":{\"epsLow\":0.2,\"epsHigh\":0.2,\"beta\":0.04},",
                so.lr, so.weight_decay, so.max_grad_norm, so.beta1, so.beta2, so.eps);
  j += opt;
  j += "\"params\":[";
  for (size_t i = 0; i < m.params().size(); ++i) {
    const vp::VideoLMParam& p = m.params()[i];
    j += (i ? "," : "") + std::string("{\"name\":\"") + p.name + "\",\"shape\":" + shape_json(p.shape) +
         ",\"offset\":" + std::to_string(p.offset) + ",\"numel\":" + std::to_string(p.numel) +
         ",\"decay\":" + (p.decay ? "true" : "false") + "}";
  }
  j += "]}";
  std::ofstream(dir + "/meta.json") << j << "\n";
  return dir;
}

// One advantage per response: alternating signs, magnitudes from the seed.
std::vector<float> advantages(int64_t b) {
  std::vector<float> a = vpbench::uniform(b, 31, 0.2f, 1.5f);
  for (int64_t i = 0; i < b; ++i)
    if (i % 2) a[i] = -a[i];
  return a;
}

int run_case(const vpbench::Args& args, const Case& c, const std::string& io_root) {
  const std::string mode = c.R ? "rl" : "sft";
  const std::string name = mode + " " + c.preset + " B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) +
                           (c.R ? " R=" + std::to_string(c.R) : "");
  vpbench::Buffers check("train_step", args);
  vp::VideoLMConfig cfg;
  check.check(vp::videolm_preset(c.preset, &cfg), "preset");
  std::unique_ptr<vp::VideoLM> model, ref;
  check.check(vp::VideoLM::create(cfg, 1, &model, args.dev()), "VideoLM::create");
  const int64_t P = cfg.patches_per_frame(), rows = c.B * (cfg.frames * P + c.T);
  std::vector<uint8_t> videos(static_cast<size_t>(c.B * cfg.frames * cfg.image_size * cfg.image_size * 3));
  {
    const std::vector<float> u = vpbench::uniform(static_cast<int64_t>(videos.size()), 7, 0.0f, 255.99f);
    for (size_t i = 0; i < videos.size(); ++i) videos[i] = static_cast<uint8_t>(u[i]);
  }
  std::vector<int32_t> text(static_cast<size_t>(c.B * c.T));
  {
    const std::vector<float> u = vpbench::uniform(static_cast<int64_t>(text.size()), 8, 0.0f, 1.0f);
    for (size_t i = 0; i < text.size(); ++i)
      text[i] = 6 + static_cast<int32_t>(u[i] * static_cast<float>(cfg.vocab - 7));
  }
  // Targets: sft, the next token inside each caption; rl, the response tokens
  // (the last R of each text segment), each predicted from the row before it.
  std::vector<int32_t> targets(text.size(), -1), resp_rows;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j + 1 < c.T; ++j)
      if (!c.R || j + 1 >= c.T - c.R) {
        targets[b * c.T + j] = text[b * c.T + j + 1];
        resp_rows.push_back(static_cast<int32_t>(b * c.T + j));
      }
  vp::VideoLMBatch batch;
  batch.videos_u8 = videos.data();
  batch.num_videos = c.B;
  batch.text = text.data();
  batch.num_text = static_cast<int64_t>(text.size());
  batch.targets = targets.data();
  for (int64_t b = 0; b < c.B; ++b) {
    std::vector<vp::VideoLMSegment> seq(2);
    seq[0].video = static_cast<int32_t>(b);
    seq[1].text_start = b * c.T;
    seq[1].text_len = c.T;
    batch.sequences.push_back(seq);
  }
  const vp::VideoLMStepOptions so = step_options();

  // The GRPO side, on the host: response b is the R scored rows of sequence b
  // (resp_rows, in order), delimited by cu.
  const int64_t nresp = static_cast<int64_t>(resp_rows.size());
  std::vector<int32_t> cu(static_cast<size_t>(c.B + 1), 0);
  for (int64_t b = 0; b < c.B; ++b) cu[b + 1] = static_cast<int32_t>(c.R * (b + 1));
  std::vector<float> adv = advantages(c.B), lp(nresp), old(nresp), refl(nresp), dlp(nresp), dfull(text.size());
  if (c.R) check.check(model->clone(&ref), "clone (the reference model)");
  std::string io;
  if (!io_root.empty()) {
    io = write_io(io_root, mode + "-" + c.preset, *model, c, videos, text, targets, check);
    write_raw(io + "/advantages.f32", adv);
  }

  // The first step's numbers, compared with the peer's: the loss, and (rl) the
  // mean log-prob of the response tokens before the update.
  double loss0 = 0, lp0 = 0;
  auto step = [&](bool first) {
    if (!c.R) {
      vp::VideoLMForwardResult r;
      check.check(model->forward(batch, vp::VideoLMForwardOptions{}, &r), "forward");
      check.check(model->backward(1.0f, nullptr, nullptr, false), "backward");
      check.check(model->optimizer_step(so, nullptr), "optimizer_step");
      if (first) loss0 = r.loss;
      return;
    }
    vp::VideoLMForwardOptions ro;
    ro.want_logprobs = true;
    ro.for_backward = false;
    vp::VideoLMForwardResult rr, pr;
    check.check(ref->forward(batch, ro, &rr), "reference forward");
    vp::VideoLMForwardOptions po;
    po.want_logprobs = true;
    check.check(model->forward(batch, po, &pr), "policy forward");
    for (int64_t k = 0; k < nresp; ++k) {
      lp[k] = pr.token_logprobs[resp_rows[k]];
      refl[k] = rr.token_logprobs[resp_rows[k]];
    }
    old = lp;  // μ = 1: the policy before this update
    if (first) {
      for (float x : lp) lp0 += x;
      lp0 /= static_cast<double>(std::max<int64_t>(nresp, 1));
    }
    vp::GrpoInputs in;
    in.logprobs = vp::TensorView(lp.data(), {nresp}, vp::DType::kFloat32);
    in.old_logprobs = vp::TensorView(old.data(), {nresp}, vp::DType::kFloat32);
    in.ref_logprobs = vp::TensorView(refl.data(), {nresp}, vp::DType::kFloat32);
    in.advantages = vp::TensorView(adv.data(), {c.B}, vp::DType::kFloat32);
    in.cu_seqlens = vp::TensorView(cu.data(), {c.B + 1}, vp::DType::kInt32);
    vp::GrpoOptions go;
    go.beta = 0.04;
    vp::GrpoStats st;
    check.check(vp::grpo_loss(in, go, vp::TensorView(dlp.data(), {nresp}, vp::DType::kFloat32), &st), "grpo_loss");
    std::fill(dfull.begin(), dfull.end(), 0.0f);
    for (int64_t k = 0; k < nresp; ++k) dfull[resp_rows[k]] = dlp[k];
    check.check(model->backward(0.0f, nullptr, dfull.data(), false), "backward");
    check.check(model->optimizer_step(so, nullptr), "optimizer_step");
    if (first) loss0 = st.loss;
  };
  step(true);
  const int reps = args.quick ? 5 : 10;
  const vpbench::Timing t = vpbench::time_it([&] { step(false); }, 0, reps, 0);
  char extra[512];
  std::snprintf(extra, sizeof extra,
                "\"mode\":\"%s\",\"preset\":\"%s\",\"B\":%lld,\"T\":%lld,\"R\":%lld,\"tokens\":%lld,"
                "\"tokPerS\":%.1f,\"loss0\":%.9g,\"lp0\":%.9g,\"params\":%lld,\"io\":\"%s\"",
                mode.c_str(), c.preset.c_str(), (long long)c.B, (long long)c.T, (long long)c.R, (long long)rows,
                rows / (t.median_ms / 1000.0), loss0, c.R ? lp0 : 0.0, (long long)model->num_params(),
                vpbench::json_escape(io).c_str());
  vpbench::emit("train_step", name, args, t, extra);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  vpbench::Args args = vpbench::parse_args(argc, argv);
  std::string io_root;
  for (size_t i = 0; i < args.rest.size(); ++i)
    if (args.rest[i] == "--io" && i + 1 < args.rest.size()) io_root = args.rest[i + 1];
  if (args.dt() != vp::DType::kFloat32) {
    vpbench::skip_line("train_step", args, "the VideoLM trains in float32 only");
    return 0;
  }
  if (!vpbench::can_run("train_step", args)) return 0;
  std::vector<Case> cases = {{"tiny", 8, 32, 0}, {"tiny", 8, 32, 24}};
  if (!args.quick) cases.insert(cases.end(), {{"small", 2, 64, 0}, {"small", 2, 64, 48}});
  if (args.full) cases.insert(cases.end(), {{"small", 8, 128, 0}, {"small", 8, 128, 96}});
  for (const Case& c : cases) run_case(args, c, io_root);
  return 0;
}
