// CPU GRPO pieces: comparative rewards, group-relative advantages (TRL
// GRPOTrainer semantics) and the per-token clipped surrogate loss.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "grpo_cpu.h"
#include "vp/thread_pool.h"

namespace vp::cpu {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Mean and Bessel-corrected std of the non-NaN values (NaN when undefined).
struct Moments {
  double mean = kNaN, std = kNaN;
  int64_t count = 0;
};

Moments moments(const float* x, int64_t n) {
  Moments m;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isnan(x[i])) {
      sum += x[i];
      ++m.count;
    }
  if (m.count == 0) return m;
  m.mean = sum / static_cast<double>(m.count);
  if (m.count < 2) return m;
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isnan(x[i])) {
      const double dv = x[i] - m.mean;
      ss += dv * dv;
    }
  m.std = std::sqrt(ss / static_cast<double>(m.count - 1));
  return m;
}

}  // namespace

Status comparative_rewards(const float* complete, int64_t n_complete, const float* degraded,
                           int64_t n_degraded, int64_t group_size, const ComparativeOptions& opts,
                           float* out) {
  const int64_t groups = n_complete / group_size;
  if (groups == 0) return Status::Ok();
  const int64_t per = n_degraded / groups;
  parallel_for(groups, std::max<int64_t>(1, 4096 / (group_size + per)), [&](int64_t g0, int64_t g1, int) {
    std::vector<float> sorted;
    for (int64_t gi = g0; gi < g1; ++gi) {
      const float* c = complete + gi * group_size;
      const float* dg = degraded + gi * per;
      float* o = out + gi * group_size;
      if (opts.mode == ComparativeMode::kPairwise) {
        // fraction of the valid degraded rewards strictly below each complete one
        sorted.clear();
        for (int64_t j = 0; j < per; ++j)
          if (!std::isnan(dg[j])) sorted.push_back(dg[j]);
        std::sort(sorted.begin(), sorted.end());
        const double m = static_cast<double>(sorted.size());
        for (int64_t i = 0; i < group_size; ++i) {
          if (std::isnan(c[i]) || m == 0) {
            o[i] = c[i];
            continue;
          }
          const double below = static_cast<double>(std::lower_bound(sorted.begin(), sorted.end(), c[i]) - sorted.begin());
          o[i] = static_cast<float>(static_cast<double>(c[i]) + opts.bonus * (below / m));
        }
      } else {
        const Moments mc = moments(c, group_size), md = moments(dg, per);
        const bool pass = mc.count > 0 && md.count > 0 && mc.mean >= opts.ratio * md.mean;
        // The rewards are float32: compare them with the float32 value of the
        // bound, so that a reward written as 0.1 is not "above 0.1".
        const float min_reward = static_cast<float>(opts.min_reward);
        for (int64_t i = 0; i < group_size; ++i) {
          const bool bonus = pass && c[i] > min_reward;
          o[i] = bonus ? static_cast<float>(static_cast<double>(c[i]) + opts.bonus) : c[i];
        }
      }
    }
  });
  return Status::Ok();
}

Status group_advantages(const float* rewards, int64_t n, int64_t group_size, AdvantageScale scale,
                        double eps, float* out) {
  if (n == 0) return Status::Ok();
  const int64_t groups = n / group_size;
  const double batch_std = scale == AdvantageScale::kBatch ? moments(rewards, n).std : 0.0;
  parallel_for(groups, std::max<int64_t>(1, 8192 / group_size), [&](int64_t g0, int64_t g1, int) {
    for (int64_t gi = g0; gi < g1; ++gi) {
      const float* r = rewards + gi * group_size;
      float* o = out + gi * group_size;
      const Moments m = moments(r, group_size);
      const double denom = scale == AdvantageScale::kNone ? 1.0
                           : scale == AdvantageScale::kBatch ? batch_std + eps
                                                             : m.std + eps;
      for (int64_t i = 0; i < group_size; ++i) {
        const double a = (static_cast<double>(r[i]) - m.mean) / denom;
        o[i] = std::isnan(a) ? 0.0f : static_cast<float>(a);
      }
    }
  });
  return Status::Ok();
}

// ---- the clipped surrogate ----------------------------------------------------------------

GrpoAccumulator::GrpoAccumulator(const GrpoTokens& toks, const GrpoOptions& opts)
    : toks_(toks), opts_(opts) {}

double GrpoAccumulator::weight_of(int64_t, int64_t seq) const {
  const double b = static_cast<double>(toks_.num_sequences);
  switch (opts_.loss_type) {
    case GrpoLossType::kGrpo: {
      const int64_t len = toks_.cu_seqlens[seq + 1] - toks_.cu_seqlens[seq];
      return 1.0 / (b * static_cast<double>(std::max<int64_t>(1, len)));
    }
    case GrpoLossType::kDrGrpo:
      return 1.0 / (b * static_cast<double>(opts_.max_completion_length));
    case GrpoLossType::kBnpo:
    case GrpoLossType::kDapo:
    default:
      return 1.0 / static_cast<double>(std::max<int64_t>(1, toks_.total_tokens));
  }
}

void GrpoAccumulator::run(int64_t t0, int64_t count, const float* logp, float* g) {
  const double lo = 1.0 - opts_.eps_low, hi = 1.0 + opts_.eps_high;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t t = t0 + k;
    while (toks_.cu_seqlens[seq_ + 1] <= t) ++seq_;
    const double w = weight_of(t, seq_);
    const double lp = logp[k];
    const double a = toks_.advantages[toks_.advantages_per_sequence ? seq_ : t];
    const double rho = std::exp(lp - static_cast<double>(toks_.old_logprobs[t]));
    const double clipped = std::clamp(rho, lo, hi);
    const double l1 = rho * a, l2 = clipped * a;
    // The clipped branch is taken (and carries no gradient) where it is the
    // smaller one strictly: ρ above 1+eps_high with A > 0, or below 1−eps_low with A < 0.
    const bool clip = (rho > hi && a > 0.0) || (rho < lo && a < 0.0);
    double loss = -std::min(l1, l2);
    double grad = clip ? 0.0 : -a * rho;
    if (toks_.ref_logprobs) {
      const double diff = static_cast<double>(toks_.ref_logprobs[t]) - lp;
      const double e = std::exp(diff);
      const double k3 = e - diff - 1.0;
      kl_ += k3;
      loss += opts_.beta * k3;
      grad += opts_.beta * (1.0 - e);
    }
    clipped_ += clip ? 1 : 0;
    loss_ += w * loss;
    g[k] = static_cast<float>(w * grad);
  }
}

GrpoStats GrpoAccumulator::finish() const {
  GrpoStats s;
  s.loss = loss_;
  const double t = static_cast<double>(toks_.total_tokens);
  s.clip_fraction = toks_.total_tokens ? static_cast<double>(clipped_) / t : 0.0;
  s.kl = toks_.total_tokens && toks_.ref_logprobs ? kl_ / t : 0.0;
  return s;
}

}  // namespace vp::cpu
