// vp_bench_grpo: token log-probs and the GRPO loss on CPU (float32) or CUDA
// (float32/bfloat16/float16 logits, hidden and weight), one JSON line per case
// (bench_util.h format):
//
//   tokenLogprobs fwd / fwd+bwd          logits [N, V] → logp [N] (→ dlogits [N, V])
//   linearTokenLogprobs fwd / fwd+bwd    hidden [N, d] · weight [V, d]ᵀ, never N×V (→ dhidden, dweight)
//   grpoLoss                             per-token clipped surrogate + k3 KL ('dapo'), → dlogprobs
//   linearGrpoLoss                       the projection, log-probs and GRPO loss fused, → dhidden, dweight
//
// bench/peers/gpu_torch.py times the composite PyTorch forms on the same
// shapes (TRL's: logits = h·wᵀ → float32 → gather − logsumexp; the GRPO
// loss written out; autograd). Targets are (i·7919 + 13) mod V; responses are
// 256 tokens long; epsLow 0.2, epsHigh 0.28, beta 0.04.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vp/grpo.h"
#include "vp/logprobs.h"

namespace {

constexpr int64_t kSeqLen = 256;

std::vector<int32_t> targets_for(int64_t n, int64_t v) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % v);
  return t;
}

std::vector<int32_t> cu_for(int64_t n) {
  std::vector<int32_t> cu{0};
  while (cu.back() < n) cu.push_back(static_cast<int32_t>(std::min<int64_t>(n, cu.back() + kSeqLen)));
  return cu;
}

// Per-token advantages: one value per response, in [-1, 1].
std::vector<float> advantages_for(const std::vector<int32_t>& cu, uint64_t stream) {
  const int64_t b = static_cast<int64_t>(cu.size()) - 1;
  const std::vector<float> per_seq = vpbench::uniform(b, stream, -1.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(cu.back()));
  for (int64_t s = 0; s < b; ++s)
    for (int32_t i = cu[s]; i < cu[s + 1]; ++i) a[i] = per_seq[s];
  return a;
}

vp::GrpoOptions grpo_options() {
  vp::GrpoOptions o;
  o.eps_low = 0.2;
  o.eps_high = 0.28;
  o.beta = 0.04;
  o.loss_type = vp::GrpoLossType::kDapo;
  return o;
}

std::vector<float> jitter(const std::vector<float>& x, uint64_t stream) {
  std::vector<float> j = vpbench::uniform(static_cast<int64_t>(x.size()), stream, -0.3f, 0.3f);
  for (size_t i = 0; i < x.size(); ++i) j[i] += x[i];
  return j;
}

std::string fields(const char* variant, int64_t n, int64_t d, int64_t v, double flops, const vpbench::Timing& t,
                   const vpbench::Args& a) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "\"variant\":\"%s\",\"N\":%lld,\"d\":%lld,\"V\":%lld,\"seqLen\":%lld,\"flops\":%.6g,\"tflops\":%.3f,%s",
                variant, static_cast<long long>(n), static_cast<long long>(d), static_cast<long long>(v),
                static_cast<long long>(kSeqLen), flops, flops > 0 ? flops / (t.median_ms * 1e9) : 0.0,
                vpbench::machine_json(a).c_str());
  return buf;
}

int failures = 0;

void report(const char* variant, const std::string& cas, const vp::Status& st, const vpbench::Timing& t, int64_t n,
            int64_t d, int64_t v, double flops, const vpbench::Args& a) {
  if (!st.ok()) {
    vpbench::error_line("grpo", cas, a, st.message());
    ++failures;
    return;
  }
  vpbench::emit("grpo", cas, a, t, fields(variant, n, d, v, flops, t, a));
}

// tokenLogprobs on materialized logits [N, V].
void bench_token(const vpbench::Args& a, int64_t n, int64_t v) {
  vpbench::Buffers buf("grpo", a);
  const vp::TensorView logits = buf.floats(vpbench::normal(n * v, 11, 2.0f), {n, v});
  const vp::TensorView targets = buf.ints(targets_for(n, v), {n});
  const vp::TensorView dlogp = buf.floats(vpbench::uniform(n, 12, -1.0f, 1.0f), {n}, vp::DType::kFloat32);
  const vp::TensorView out = buf.empty({n}, vp::DType::kFloat32), dlogits = buf.empty({n, v});
  const std::string shape = "N=" + std::to_string(n) + " V=" + std::to_string(v);
  for (const bool backward : {false, true}) {
    vp::Status st;
    const vpbench::Timing t = vpbench::time_on(a, [&] {
      st = vp::token_logprobs(logits, targets, out);
      if (st.ok() && backward) st = vp::token_logprobs_backward(dlogp, logits, targets, dlogits);
    });
    const char* variant = backward ? "tokenLogprobs fwd+bwd" : "tokenLogprobs fwd";
    report(variant, std::string(variant) + " " + shape, st, t, n, 0, v, 0, a);
  }
}

// linearTokenLogprobs and linearGrpoLoss through the projection.
void bench_linear(const vpbench::Args& a, int64_t n, int64_t d, int64_t v) {
  vpbench::Buffers buf("grpo", a);
  const float ws = 1.0f / std::sqrt(static_cast<float>(d));
  const vp::TensorView hidden = buf.floats(vpbench::normal(n * d, 21), {n, d});
  const vp::TensorView weight = buf.floats(vpbench::normal(v * d, 22, ws), {v, d});
  const vp::TensorView targets = buf.ints(targets_for(n, v), {n});
  const vp::TensorView dlogp = buf.floats(vpbench::uniform(n, 23, -1.0f, 1.0f), {n}, vp::DType::kFloat32);
  const vp::TensorView out = buf.empty({n}, vp::DType::kFloat32);
  const vp::TensorView dhidden = buf.empty({n, d}), dweight = buf.empty({v, d});
  const std::string shape = "N=" + std::to_string(n) + " d=" + std::to_string(d) + " V=" + std::to_string(v);
  const double proj = 2.0 * n * d * v;
  for (const bool backward : {false, true}) {
    vp::Status st;
    const vpbench::Timing t = vpbench::time_on(a, [&] {
      st = vp::linear_token_logprobs(hidden, weight, targets, out);
      if (st.ok() && backward) st = vp::linear_token_logprobs_backward(dlogp, hidden, weight, targets, dhidden, dweight);
    });
    const char* variant = backward ? "linearTokenLogprobs fwd+bwd" : "linearTokenLogprobs fwd";
    report(variant, std::string(variant) + " " + shape, st, t, n, d, v, proj * (backward ? 4 : 1), a);
  }
  // The policies near the current one: old and ref = logp + U(-0.3, 0.3).
  std::vector<float> lp(static_cast<size_t>(n));
  buf.check(vp::linear_token_logprobs(hidden, weight, targets, out), "linearTokenLogprobs");
  if (a.cuda()) buf.check(vp::cuda::copy_to_host(lp.data(), out.data, lp.size() * 4), "copy to the host");
  else lp.assign(out.as<float>(), out.as<float>() + n);
  const std::vector<int32_t> cu = cu_for(n);
  vp::LinearGrpoInputs in;
  in.hidden = hidden;
  in.weight = weight;
  in.targets = targets;
  in.old_logprobs = buf.floats(jitter(lp, 24), {n}, vp::DType::kFloat32);
  in.ref_logprobs = buf.floats(jitter(lp, 25), {n}, vp::DType::kFloat32);
  in.advantages = buf.floats(advantages_for(cu, 26), {n}, vp::DType::kFloat32);
  in.cu_seqlens = buf.ints(cu, {static_cast<int64_t>(cu.size())});
  const vp::GrpoOptions o = grpo_options();
  vp::GrpoStats stats;
  vp::Status st;
  const vpbench::Timing t = vpbench::time_on(a, [&] { st = vp::linear_grpo_loss(in, o, dhidden, dweight, vp::TensorView(), &stats); });
  report("linearGrpoLoss", "linearGrpoLoss " + shape, st, t, n, d, v, proj * 3, a);
}

// grpoLoss on per-token log-probs.
void bench_loss(const vpbench::Args& a, int64_t n) {
  vpbench::Buffers buf("grpo", a);
  const std::vector<float> lp = vpbench::uniform(n, 31, -4.0f, 0.0f);
  const std::vector<int32_t> cu = cu_for(n);
  vp::GrpoInputs in;
  in.logprobs = buf.floats(lp, {n}, vp::DType::kFloat32);
  in.old_logprobs = buf.floats(jitter(lp, 32), {n}, vp::DType::kFloat32);
  in.ref_logprobs = buf.floats(jitter(lp, 33), {n}, vp::DType::kFloat32);
  in.advantages = buf.floats(advantages_for(cu, 34), {n}, vp::DType::kFloat32);
  in.cu_seqlens = buf.ints(cu, {static_cast<int64_t>(cu.size())});
  const vp::TensorView dlogp = buf.empty({n}, vp::DType::kFloat32);
  const vp::GrpoOptions o = grpo_options();
  vp::GrpoStats stats;
  vp::Status st;
  const vpbench::Timing t = vpbench::time_on(a, [&] { st = vp::grpo_loss(in, o, dlogp, &stats); });
  report("grpoLoss", "grpoLoss T=" + std::to_string(n), st, t, n, 0, 0, 0, a);
}

}  // namespace

int main(int argc, char** argv) {
  vpbench::Args args = vpbench::parse_args(argc, argv);
  if (!vpbench::can_run("grpo", args)) return 0;
  // grpoLoss takes float32 per-token vectors whatever the model's dtype: run it once, with float32.
  const bool f32 = args.dt() == vp::DType::kFloat32;
  if (args.cuda()) {
    const bool big = args.full && !f32;  // float32 projections: the smaller shapes only (time)
    bench_token(args, args.quick ? 4096 : 8192, 32768);
    bench_linear(args, 4096, 2048, 32768);
    if (big) bench_linear(args, 8192, 4096, 131072);
    if (f32) bench_loss(args, 65536);
  } else {
    bench_token(args, 512, 4096);
    bench_linear(args, 512, 128, 4096);
    bench_loss(args, 4096);
  }
  return failures ? 1 : 0;
}
