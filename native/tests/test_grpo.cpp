// GRPO pieces against plain float64 re-implementations of TRL's formulas:
// comparative rewards, group advantages (NaN rewards, groups of one, batch
// scaling), the clipped loss with every aggregation (its gradient also checked
// by central finite differences), and the fused linear GRPO loss; bad inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/grpo.h"
#include "vp/logprobs.h"
#include "vp/thread_pool.h"

namespace {

using vp::DType;
using vp::TensorView;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

TensorView f32(std::vector<float>& x) { return TensorView(x.data(), {static_cast<int64_t>(x.size())}, DType::kFloat32); }
TensorView f32(std::vector<float>& x, std::initializer_list<int64_t> shape) { return TensorView(x.data(), shape, DType::kFloat32); }
TensorView i32(std::vector<int32_t>& x) { return TensorView(x.data(), {static_cast<int64_t>(x.size())}, DType::kInt32); }

// ---- references -------------------------------------------------------------------------

// torch.nanmean / Bessel-corrected nanstd of a slice (NaN when undefined).
double nanmean(const std::vector<double>& x) {
  double s = 0.0;
  int c = 0;
  for (double v : x)
    if (!std::isnan(v)) s += v, ++c;
  return c ? s / c : kNaN;
}
double nanstd(const std::vector<double>& x) {
  const double m = nanmean(x);
  double s = 0.0;
  int c = 0;
  for (double v : x)
    if (!std::isnan(v)) s += (v - m) * (v - m), ++c;
  return c > 1 ? std::sqrt(s / (c - 1)) : kNaN;
}

// TRL: grouped = rewards.view(-1, G); mean_g, std_g (or std of the batch);
// A = (r − mean_g) / (std + eps) (or r − mean_g for 'none'); NaN → 0.
std::vector<double> ref_advantages(const std::vector<float>& r, int g, vp::AdvantageScale scale, double eps) {
  std::vector<double> all(r.begin(), r.end()), out(r.size());
  const double batch_std = nanstd(all);
  for (size_t g0 = 0; g0 < r.size(); g0 += g) {
    std::vector<double> grp(all.begin() + g0, all.begin() + g0 + g);
    const double mean = nanmean(grp), std = nanstd(grp);
    for (int i = 0; i < g; ++i) {
      double a = grp[i] - mean;
      if (scale == vp::AdvantageScale::kGroup) a /= std + eps;
      if (scale == vp::AdvantageScale::kBatch) a /= batch_std + eps;
      out[g0 + i] = std::isnan(a) ? 0.0 : a;
    }
  }
  return out;
}

struct GrpoRef {
  double loss = 0, clip = 0, kl = 0;
  double scale = 0;  // Σ |w_t · ℓ_t|: the size of the terms the loss sums
  std::vector<double> grad;
};

// The per-token surrogate with TRL's aggregations; the gradient analytically.
GrpoRef ref_grpo(const std::vector<double>& lp, const std::vector<float>& old, const std::vector<float>* ref,
                 const std::vector<float>& adv_tok, const std::vector<int32_t>& cu, const vp::GrpoOptions& o) {
  const int64_t T = static_cast<int64_t>(lp.size()), B = static_cast<int64_t>(cu.size()) - 1;
  GrpoRef out;
  out.grad.assign(T, 0.0);
  std::vector<double> per_tok(T), dper(T);
  int64_t clipped = 0;
  double kl = 0;
  for (int64_t t = 0; t < T; ++t) {
    const double a = adv_tok[t];
    const double rho = std::exp(lp[t] - old[t]);
    const double c = std::min(std::max(rho, 1 - o.eps_low), 1 + o.eps_high);
    double l = -std::min(rho * a, c * a);
    const bool is_low = rho < 1 - o.eps_low && a < 0, is_high = rho > 1 + o.eps_high && a > 0;
    double g = (is_low || is_high) ? 0.0 : -a * rho;
    clipped += (is_low || is_high);
    if (ref) {
      const double diff = (*ref)[t] - lp[t];
      const double k3 = std::exp(diff) - diff - 1;
      kl += k3;
      l += o.beta * k3;
      g += o.beta * (1 - std::exp(diff));
    }
    per_tok[t] = l;
    dper[t] = g;
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = cu[b + 1] - cu[b];
    for (int64_t t = cu[b]; t < cu[b + 1]; ++t) {
      double w = 0;
      switch (o.loss_type) {
        case vp::GrpoLossType::kGrpo: w = 1.0 / (B * std::max<int64_t>(len, 1)); break;
        case vp::GrpoLossType::kBnpo:
        case vp::GrpoLossType::kDapo: w = 1.0 / std::max<int64_t>(T, 1); break;
        case vp::GrpoLossType::kDrGrpo: w = 1.0 / (B * static_cast<double>(o.max_completion_length)); break;
      }
      out.loss += w * per_tok[t];
      out.scale += std::abs(w * per_tok[t]);
      out.grad[t] = w * dper[t];
    }
  }
  out.clip = T ? static_cast<double>(clipped) / T : 0;
  out.kl = T && ref ? kl / T : 0;
  return out;
}

std::vector<int32_t> random_cu(int b, int max_len, uint64_t seed, bool allow_empty) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> cu{0};
  for (int i = 0; i < b; ++i) {
    int len = static_cast<int>(rng() % static_cast<uint64_t>(max_len + 1));
    if (!allow_empty && len == 0) len = 1;
    cu.push_back(cu.back() + len);
  }
  return cu;
}

std::vector<float> per_token(const std::vector<float>& per_seq, const std::vector<int32_t>& cu) {
  std::vector<float> out;
  for (size_t b = 0; b + 1 < cu.size(); ++b)
    for (int32_t t = cu[b]; t < cu[b + 1]; ++t) out.push_back(per_seq[b]);
  return out;
}

std::vector<float> jitter(const std::vector<double>& x, uint64_t seed, float amp) {
  auto n = vptest::random_floats(x.size(), seed, -amp, amp);
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = static_cast<float>(x[i] + n[i]);
  return out;
}

const char* loss_name(vp::GrpoLossType t) {
  switch (t) {
    case vp::GrpoLossType::kGrpo: return "grpo";
    case vp::GrpoLossType::kBnpo: return "bnpo";
    case vp::GrpoLossType::kDapo: return "dapo";
    case vp::GrpoLossType::kDrGrpo: return "dr_grpo";
  }
  return "?";
}

}  // namespace

// ---- advantages -----------------------------------------------------------------------------

TEST_CASE("groupAdvantages follows TRL: group/batch/none scaling, NaN rewards, groups of one") {
  std::vector<float> out(4);
  std::vector<float> r{1, 2, 3, 4};
  REQUIRE(vp::group_advantages(f32(r), 2, vp::AdvantageScale::kGroup, 1e-4, f32(out)).ok());
  const double s = std::sqrt(0.5);
  CHECK(out[0] == doctest::Approx(-0.5 / (s + 1e-4)).epsilon(1e-6));
  CHECK(out[1] == doctest::Approx(0.5 / (s + 1e-4)).epsilon(1e-6));
  // A group of equal rewards: 0 / (0 + eps) = 0.
  r = {3, 3, 3, 3};
  REQUIRE(vp::group_advantages(f32(r), 4, vp::AdvantageScale::kGroup, 1e-4, f32(out)).ok());
  for (float a : out) CHECK(a == 0.0f);
  // Groups of one: std undefined → NaN → 0; with 'none' the advantage is r − r = 0.
  r = {1, 5, -2, 7};
  for (auto sc : {vp::AdvantageScale::kGroup, vp::AdvantageScale::kNone}) {
    REQUIRE(vp::group_advantages(f32(r), 1, sc, 1e-4, f32(out)).ok());
    for (float a : out) CHECK(a == 0.0f);
  }
  // ...but 'batch' scaling of groups of one is defined (and still 0 since r − mean_g = 0).
  REQUIRE(vp::group_advantages(f32(r), 1, vp::AdvantageScale::kBatch, 1e-4, f32(out)).ok());
  for (float a : out) CHECK(a == 0.0f);
  // NaN rewards are left out of the statistics and get advantage 0.
  r = {NAN, 1, 3, NAN};
  REQUIRE(vp::group_advantages(f32(r), 4, vp::AdvantageScale::kGroup, 1e-4, f32(out)).ok());
  CHECK(out[0] == 0.0f);
  CHECK(out[3] == 0.0f);
  CHECK(out[1] == doctest::Approx(-1.0 / (std::sqrt(2.0) + 1e-4)).epsilon(1e-6));
  CHECK(out[2] == doctest::Approx(1.0 / (std::sqrt(2.0) + 1e-4)).epsilon(1e-6));
  // A group of all-NaN rewards: zeros.
  r = {NAN, NAN, 1, 2};
  REQUIRE(vp::group_advantages(f32(r), 2, vp::AdvantageScale::kGroup, 1e-4, f32(out)).ok());
  CHECK(out[0] == 0.0f);
  CHECK(out[1] == 0.0f);
}

TEST_CASE("groupAdvantages matches the float64 reference on large random batches") {
  vptest::BackendScope scope;
  const int saved = vp::num_threads();
  uint64_t seed = 1;
  for (int threads : {1, 2}) {
    vp::set_num_threads(threads);
    for (int g : {1, 2, 4, 7, 16}) {
      for (auto sc : {vp::AdvantageScale::kGroup, vp::AdvantageScale::kBatch, vp::AdvantageScale::kNone}) {
        for (double eps : {1e-4, 0.0, 0.5}) {
          const int n = g * 2999;
          auto r = vptest::random_floats(n, seed++, -3.0f, 5.0f);
          std::mt19937_64 rng(seed++);
          for (auto& x : r)
            if (rng() % 13 == 0) x = NAN;
          auto ref = ref_advantages(r, g, sc, eps);
          auto out = vptest::poisoned(n);
          REQUIRE(vp::group_advantages(f32(r), g, sc, eps, f32(out)).ok());
          CAPTURE(g);
          CAPTURE(static_cast<int>(sc));
          CAPTURE(eps);
          CHECK(vptest::rel_error(out, ref) <= 1e-5);
        }
      }
    }
  }
  vp::set_num_threads(saved);
}

// ---- comparative rewards ---------------------------------------------------------------------

TEST_CASE("comparativeRewards: pairwise counts strictly lower degraded rewards") {
  std::vector<float> c{0.5f, 1.0f, 0.2f, 0.0f, 0.7f, 0.7f}, d{0.5f, 0.2f, 0.7f, NAN}, out(6);
  vp::ComparativeOptions o;  // pairwise, bonus 0.5
  REQUIRE(vp::comparative_rewards(f32(c), f32(d), 3, o, f32(out)).ok());
  // group 0: degraded {0.5, 0.2}
  CHECK(out[0] == doctest::Approx(0.5 + 0.5 * 0.5));   // 0.2 < 0.5; 0.5 is not strictly lower
  CHECK(out[1] == doctest::Approx(1.0 + 0.5 * 1.0));
  CHECK(out[2] == doctest::Approx(0.2 + 0.0));
  // group 1: degraded {0.7, NaN}: the NaN is left out
  CHECK(out[3] == doctest::Approx(0.0));
  CHECK(out[4] == doctest::Approx(0.7));
  CHECK(out[5] == doctest::Approx(0.7));
  // a NaN task reward stays NaN
  c[1] = NAN;
  REQUIRE(vp::comparative_rewards(f32(c), f32(d), 3, o, f32(out)).ok());
  CHECK(std::isnan(out[1]));
}

TEST_CASE("comparativeRewards: threshold mode is inclusive and needs task reward > 0.1") {
  vp::ComparativeOptions o;
  o.mode = vp::ComparativeMode::kThreshold;
  o.bonus = 0.3;
  o.ratio = 0.5;
  // mean_c = 0.5 == 0.5 · mean_d (1.0): the test is inclusive → bonus for rewards > 0.1
  std::vector<float> c{0.25f, 0.75f, 0.0f, 1.0f}, d{1.0f, 1.0f}, out(4);
  REQUIRE(vp::comparative_rewards(f32(c), f32(d), 4, o, f32(out)).ok());
  CHECK(out[0] == doctest::Approx(0.25 + 0.3));
  CHECK(out[1] == doctest::Approx(0.75 + 0.3));
  CHECK(out[2] == doctest::Approx(0.0));  // not above 0.1
  CHECK(out[3] == doctest::Approx(1.0 + 0.3));
  // just above the ratio: no bonus
  o.ratio = std::nextafter(0.5, 1.0);
  REQUIRE(vp::comparative_rewards(f32(c), f32(d), 4, o, f32(out)).ok());
  for (int i = 0; i < 4; ++i) CHECK(out[i] == c[i]);
}

TEST_CASE("comparativeRewards matches a float64 reference on random groups") {
  uint64_t seed = 7;
  for (auto mode : {vp::ComparativeMode::kPairwise, vp::ComparativeMode::kThreshold}) {
    for (int g : {1, 4, 8}) {
      for (int m : {1, 3, 8}) {
        const int groups = 1234;
        auto c = vptest::random_floats(groups * g, seed++, 0.0f, 1.0f);
        auto d = vptest::random_floats(groups * m, seed++, 0.0f, 1.0f);
        for (size_t i = 0; i < c.size(); i += 5) c[i] = std::round(c[i] * 4) / 4;  // ties
        for (size_t i = 0; i < d.size(); i += 3) d[i] = std::round(d[i] * 4) / 4;
        vp::ComparativeOptions o;
        o.mode = mode;
        o.bonus = mode == vp::ComparativeMode::kPairwise ? 0.5 : 0.3;
        std::vector<double> ref(c.size());
        for (int gi = 0; gi < groups; ++gi) {
          double mc = 0, md = 0;
          for (int i = 0; i < g; ++i) mc += c[gi * g + i];
          for (int j = 0; j < m; ++j) md += d[gi * m + j];
          mc /= g;
          md /= m;
          for (int i = 0; i < g; ++i) {
            const double x = c[gi * g + i];
            if (mode == vp::ComparativeMode::kPairwise) {
              int lower = 0;
              for (int j = 0; j < m; ++j) lower += d[gi * m + j] < x;
              ref[gi * g + i] = x + 0.5 * lower / m;
            } else {
              ref[gi * g + i] = x + ((mc >= 0.8 * md && x > 0.1f) ? 0.3 : 0.0);
            }
          }
        }
        auto out = vptest::poisoned(c.size());
        REQUIRE(vp::comparative_rewards(f32(c), f32(d), g, o, f32(out)).ok());
        CAPTURE(static_cast<int>(mode));
        CAPTURE(g);
        CAPTURE(m);
        CHECK(vptest::rel_error(out, ref) <= 1e-6);
      }
    }
  }
}

TEST_CASE("rewards and advantages reject bad inputs with clear messages") {
  std::vector<float> r(10), out(10), d(3);
  vp::Status s = vp::group_advantages(f32(r), 3, vp::AdvantageScale::kGroup, 1e-4, f32(out));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("groupSize (3) must divide the number of rewards (10)") != std::string::npos);
  s = vp::group_advantages(f32(r), 0, vp::AdvantageScale::kGroup, 1e-4, f32(out));
  CHECK(s.message().find("groupSize must be an integer >= 1") != std::string::npos);
  r[4] = INFINITY;
  s = vp::group_advantages(f32(r), 5, vp::AdvantageScale::kGroup, 1e-4, f32(out));
  CHECK(s.message().find("rewards[4]") != std::string::npos);
  s = vp::group_advantages(f32(out), 5, vp::AdvantageScale::kGroup, -1.0, f32(out));
  CHECK(s.message().find("eps") != std::string::npos);
  std::vector<float> c(4), o4(4);
  s = vp::comparative_rewards(f32(c), f32(d), 2, {}, f32(o4));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("taskDegraded") != std::string::npos);
  s = vp::comparative_rewards(f32(c), f32(d), 3, {}, f32(o4));
  CHECK(s.message().find("groupSize (3) must divide") != std::string::npos);
  std::vector<float> empty;
  s = vp::comparative_rewards(f32(c), f32(empty), 2, {}, f32(o4));
  CHECK(s.message().find("taskDegraded") != std::string::npos);
}

// ---- the clipped loss ---------------------------------------------------------------------

TEST_CASE("grpoLoss matches the float64 reference for every loss type; its gradient matches finite differences") {
  uint64_t seed = 42;
  for (auto lt : {vp::GrpoLossType::kGrpo, vp::GrpoLossType::kBnpo, vp::GrpoLossType::kDapo, vp::GrpoLossType::kDrGrpo}) {
    for (bool with_ref : {false, true}) {
      for (bool per_seq_adv : {false, true}) {
        const std::string lt_s = loss_name(lt);
          CAPTURE(lt_s);
        CAPTURE(with_ref);
        CAPTURE(per_seq_adv);
        auto cu = random_cu(23, 40, seed++, true);
        const int64_t T = cu.back();
        auto lp_f = vptest::random_floats(T, seed++, -6.0f, -0.1f);
        std::vector<double> lp(lp_f.begin(), lp_f.end());
        auto old = jitter(lp, seed++, 0.4f);
        auto ref = jitter(lp, seed++, 0.5f);
        auto adv_seq = vptest::random_floats(23, seed++, -2.0f, 2.0f);
        auto adv_tok = per_token(adv_seq, cu);
        if (!per_seq_adv) adv_tok = vptest::random_floats(T, seed++, -2.0f, 2.0f);
        vp::GrpoOptions o;
        o.loss_type = lt;
        o.eps_low = 0.2;
        o.eps_high = 0.28;
        o.beta = with_ref ? 0.04 : 0.0;
        o.max_completion_length = 48;
        auto want = ref_grpo(lp, old, with_ref ? &ref : nullptr, adv_tok, cu, o);
        vp::GrpoInputs in;
        in.logprobs = f32(lp_f);
        in.old_logprobs = f32(old);
        if (with_ref) in.ref_logprobs = f32(ref);
        in.advantages = per_seq_adv ? f32(adv_seq) : f32(adv_tok);
        in.cu_seqlens = i32(cu);
        auto grad = vptest::poisoned(T);
        vp::GrpoStats st;
        REQUIRE(vp::grpo_loss(in, o, f32(grad), &st).ok());
        // The loss sums terms of both signs: its error is relative to their size.
          CHECK(std::abs(st.loss - want.loss) <= 1e-5 * want.scale);
        CHECK(vptest::rel_error(grad, want.grad) <= 1e-5);
        CHECK(st.clip_fraction == doctest::Approx(want.clip).epsilon(1e-12));
        CHECK(want.clip > 0.0);  // the data does exercise clipping
        if (with_ref) CHECK(std::abs(st.kl - want.kl) <= 1e-5 * want.kl);
        else CHECK(st.kl == 0.0);
        // The reference gradient against central differences of the reference loss.
        const double h = 1e-6;
        std::vector<double> fd(T);
        for (int64_t t = 0; t < T; ++t) {
          auto p = lp, m = lp;
          p[t] += h;
          m[t] -= h;
          fd[t] = (ref_grpo(p, old, with_ref ? &ref : nullptr, adv_tok, cu, o).loss -
                   ref_grpo(m, old, with_ref ? &ref : nullptr, adv_tok, cu, o).loss) / (2 * h);
        }
        CHECK(vptest::rel_error(fd, want.grad) <= 1e-6);
      }
    }
  }
}

TEST_CASE("grpoLoss: an empty batch and empty sequences") {
  std::vector<float> e;
  std::vector<int32_t> cu{0};
  vp::GrpoInputs in;
  in.logprobs = f32(e);
  in.old_logprobs = f32(e);
  in.advantages = f32(e);
  in.cu_seqlens = i32(cu);
  vp::GrpoStats st;
  st.loss = 123;
  REQUIRE(vp::grpo_loss(in, {}, f32(e), &st).ok());
  CHECK(st.loss == 0.0);
  CHECK(st.clip_fraction == 0.0);
  // grpo with an empty sequence: it counts as a sequence with loss 0 (TRL clamps the length to 1).
  std::vector<float> lp{-1.0f, -2.0f}, old{-1.0f, -2.0f}, adv{1.0f, 1.0f}, g(2);
  cu = {0, 0, 2};
  in.logprobs = f32(lp);
  in.old_logprobs = f32(old);
  in.advantages = f32(adv);
  in.cu_seqlens = i32(cu);
  vp::GrpoOptions o;
  o.loss_type = vp::GrpoLossType::kGrpo;
  REQUIRE(vp::grpo_loss(in, o, f32(g), &st).ok());
  CHECK(st.loss == doctest::Approx(-0.5));  // (0 + mean(−1, −1)) / 2
  CHECK(g[0] == doctest::Approx(-0.25));
}

TEST_CASE("grpoLoss rejects bad inputs with clear messages") {
  std::vector<float> lp{-1, -2, -3}, old{-1, -2, -3}, adv{1, -1, 0}, g(3);
  std::vector<int32_t> cu{0, 2, 3};
  vp::GrpoInputs in;
  in.logprobs = f32(lp);
  in.old_logprobs = f32(old);
  in.advantages = f32(adv);
  in.cu_seqlens = i32(cu);
  vp::GrpoStats st;
  vp::GrpoOptions o;
  o.loss_type = vp::GrpoLossType::kDrGrpo;
  vp::Status s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
  CHECK(s.message().find("'dr_grpo' needs maxCompletionLength") != std::string::npos);
  o.max_completion_length = 1;
  s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.message().find("more than maxCompletionLength") != std::string::npos);
  o = {};
  o.beta = 0.1;
  s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.message().find("refLogprobs") != std::string::npos);
  o = {};
  std::vector<float> adv4(4);
  in.advantages = f32(adv4);
  s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.message().find("advantages must have one value per token (3) or per sequence (2)") != std::string::npos);
  in.advantages = f32(adv);
  std::vector<int32_t> bad_cu{0, 2, 4};
  in.cu_seqlens = i32(bad_cu);
  s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.message().find("cuSeqlens[2] must equal the token count 3") != std::string::npos);
  bad_cu = {1, 2, 3};
  s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.message().find("cuSeqlens[0] must be 0") != std::string::npos);
  bad_cu = {0, 3, 2};
  s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.message().find("cuSeqlens[2] must be >=") != std::string::npos);
  in.cu_seqlens = i32(cu);
  old[1] = NAN;
  s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.message().find("oldLogprobs[1] must be finite") != std::string::npos);
  old[1] = -2;
  std::vector<float> short_old{-1, -2};
  in.old_logprobs = f32(short_old);
  s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.message().find("oldLogprobs must have length 3") != std::string::npos);
  in.old_logprobs = f32(old);
  o.eps_low = -0.1;
  s = vp::grpo_loss(in, o, f32(g), &st);
  CHECK(s.message().find("epsLow") != std::string::npos);
}

// ---- the fused linear GRPO loss --------------------------------------------------------------

TEST_CASE("linearGrpoLoss matches the float64 composition for every loss type, ISA and thread count") {
  vptest::BackendScope scope;
  const int saved = vp::num_threads();
  uint64_t seed = 900;
  struct Shape {
    int b, max_len, d, v;
  };
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    for (int threads : {1, 2}) {
      vp::set_num_threads(threads);
      for (Shape sh : {Shape{3, 5, 7, 11}, Shape{9, 40, 48, 700}, Shape{6, 90, 33, 1500}}) {
        for (auto lt : {vp::GrpoLossType::kGrpo, vp::GrpoLossType::kBnpo, vp::GrpoLossType::kDapo,
                        vp::GrpoLossType::kDrGrpo}) {
          const std::string isa_s = vp::isa_name(isa);
          CAPTURE(isa_s);
          CAPTURE(threads);
          CAPTURE(sh.d);
          CAPTURE(sh.v);
          const std::string lt_s = loss_name(lt);
          CAPTURE(lt_s);
          auto cu = random_cu(sh.b, sh.max_len, seed++, false);
          const int64_t T = cu.back(), d = sh.d, v = sh.v;
          auto h = vptest::random_floats(T * d, seed++);
          auto w = vptest::random_floats(v * d, seed++);
          std::vector<int32_t> tg(T);
          std::mt19937_64 rng(seed++);
          for (auto& x : tg) x = static_cast<int32_t>(rng() % v);
          const float temp = lt == vp::GrpoLossType::kBnpo ? 0.9f : 1.0f;
          // float64 log-probs
          std::vector<double> lp(T), lse(T);
          std::vector<double> z(T * v);
          for (int64_t i = 0; i < T; ++i) {
            double m = -INFINITY;
            for (int64_t j = 0; j < v; ++j) {
              double s = 0;
              for (int64_t k = 0; k < d; ++k) s += static_cast<double>(h[i * d + k]) * w[j * d + k];
              z[i * v + j] = s / temp;
              m = std::max(m, z[i * v + j]);
            }
            double s = 0;
            for (int64_t j = 0; j < v; ++j) s += std::exp(z[i * v + j] - m);
            lse[i] = m + std::log(s);
            lp[i] = z[i * v + tg[i]] - lse[i];
          }
          auto old = jitter(lp, seed++, 0.3f);
          auto ref = jitter(lp, seed++, 0.3f);
          auto adv = vptest::random_floats(T, seed++, -1.5f, 1.5f);
          vp::GrpoOptions o;
          o.loss_type = lt;
          o.beta = 0.05;
          o.eps_high = 0.25;
          o.max_completion_length = sh.max_len;
          o.temperature = temp;
          auto want = ref_grpo(lp, old, &ref, adv, cu, o);
          std::vector<double> dh(T * d, 0.0), dw(v * d, 0.0);
          for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < v; ++j) {
              const double gz = want.grad[i] * ((j == tg[i]) - std::exp(z[i * v + j] - lse[i])) / temp;
              for (int64_t k = 0; k < d; ++k) {
                dh[i * d + k] += gz * w[j * d + k];
                dw[j * d + k] += gz * h[i * d + k];
              }
            }
          vp::LinearGrpoInputs in;
          in.hidden = f32(h, {T, d});
          in.weight = f32(w, {v, d});
          in.targets = i32(tg);
          in.old_logprobs = f32(old);
          in.ref_logprobs = f32(ref);
          in.advantages = f32(adv);
          in.cu_seqlens = i32(cu);
          auto gh = vptest::poisoned(T * d), gw = vptest::poisoned(v * d), lpo = vptest::poisoned(T);
          vp::GrpoStats st;
          REQUIRE(vp::linear_grpo_loss(in, o, f32(gh, {T, d}), f32(gw, {v, d}), f32(lpo), &st).ok());
          // The loss sums terms of both signs: its error is relative to their size.
          CHECK(std::abs(st.loss - want.loss) <= 1e-5 * want.scale);
          CHECK(vptest::rel_error(lpo, lp) <= 1e-5);
          CHECK(vptest::rel_error(gh, dh) <= 1e-5);
          CHECK(vptest::rel_error(gw, dw) <= 1e-5);
          CHECK(st.clip_fraction == doctest::Approx(want.clip).epsilon(1e-12));
          CHECK(std::abs(st.kl - want.kl) <= 1e-5 * want.kl);
        }
      }
    }
  }
  vp::set_num_threads(saved);
}

TEST_CASE("linearGrpoLoss agrees with linearTokenLogprobs → grpoLoss → linearTokenLogprobsBackward") {
  const int64_t T = 300, d = 64, v = 5000;
  auto cu = random_cu(12, 50, 3, false);
  cu.back() = T;
  for (size_t i = 1; i + 1 < cu.size(); ++i) cu[i] = std::min<int32_t>(cu[i], T);
  auto h = vptest::random_floats(T * d, 4);
  auto w = vptest::random_floats(v * d, 5);
  std::vector<int32_t> tg(T);
  for (int64_t i = 0; i < T; ++i) tg[i] = static_cast<int32_t>((i * 7919) % v);
  std::vector<float> lp(T);
  REQUIRE(vp::linear_token_logprobs(f32(h, {T, d}), f32(w, {v, d}), i32(tg), f32(lp)).ok());
  std::vector<double> lpd(lp.begin(), lp.end());
  auto old = jitter(lpd, 6, 0.3f);
  auto adv = vptest::random_floats(T, 7, -1, 1);
  vp::GrpoInputs gi;
  gi.logprobs = f32(lp);
  gi.old_logprobs = f32(old);
  gi.advantages = f32(adv);
  gi.cu_seqlens = i32(cu);
  std::vector<float> dlp(T);
  vp::GrpoStats st1, st2;
  REQUIRE(vp::grpo_loss(gi, {}, f32(dlp), &st1).ok());
  std::vector<float> gh1(T * d), gw1(v * d), gh2(T * d), gw2(v * d);
  REQUIRE(vp::linear_token_logprobs_backward(f32(dlp), f32(h, {T, d}), f32(w, {v, d}), i32(tg), f32(gh1, {T, d}),
                                             f32(gw1, {v, d})).ok());
  vp::LinearGrpoInputs in;
  in.hidden = f32(h, {T, d});
  in.weight = f32(w, {v, d});
  in.targets = i32(tg);
  in.old_logprobs = f32(old);
  in.advantages = f32(adv);
  in.cu_seqlens = i32(cu);
  REQUIRE(vp::linear_grpo_loss(in, {}, f32(gh2, {T, d}), f32(gw2, {v, d}), TensorView(), &st2).ok());
  CHECK(st1.loss == doctest::Approx(st2.loss).epsilon(1e-6));
  CHECK(st1.clip_fraction == st2.clip_fraction);
  CHECK(vptest::rel_error(gh2, gh1) <= 1e-6);
  CHECK(vptest::rel_error(gw2, gw1) <= 1e-6);
}

// ---- CUDA against the CPU (skipped without a usable GPU) --------------------------------------

#include "vp/cuda.h"

namespace {

// A device copy of a host vector, freed at scope exit.
struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  template <typename T>
  explicit Dev(const std::vector<T>& host) : bytes(host.size() * sizeof(T)) {
    REQUIRE(vp::cuda::malloc_device(&p, bytes ? bytes : 4).ok());
    if (bytes) REQUIRE(vp::cuda::copy_to_device(p, host.data(), bytes).ok());
  }
  explicit Dev(size_t b) : bytes(b) { REQUIRE(vp::cuda::malloc_device(&p, b ? b : 4).ok()); }
  ~Dev() { vp::cuda::free_device(p); }
  template <typename T>
  std::vector<T> get(size_t n) const {
    std::vector<T> out(n);
    if (n) REQUIRE(vp::cuda::copy_to_host(out.data(), p, n * sizeof(T)).ok());
    return out;
  }
};

TensorView dview(const Dev& d, std::initializer_list<int64_t> shape, DType dt) {
  return TensorView(d.p, shape, dt, vp::Device::kCUDA);
}

// float32 → bfloat16 → float32 on the host (round to nearest even), to give the CPU the same inputs.
float round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace

TEST_CASE("CUDA log-probs and GRPO agree with the CPU (float32 within 1e-5, bfloat16 within 1e-2)") {
  if (vptest::skip_without_cuda()) return;
  const int64_t d = 64, v = 3000;
  auto cu = random_cu(12, 40, 1, false);
  const int64_t n = cu.back();
  auto h = vptest::random_floats(n * d, 2), w = vptest::random_floats(v * d, 3, -0.5f, 0.5f);
  std::vector<int32_t> tg(n);
  for (int64_t i = 0; i < n; ++i) tg[i] = static_cast<int32_t>((i * 7919 + 13) % v);
  auto dl = vptest::random_floats(n, 4);
  auto adv = vptest::random_floats(n, 5, -1, 1);
  for (const bool bf16 : {false, true}) {
    CAPTURE(bf16);
    const double tol = bf16 ? 1e-2 : 1e-5;
    std::vector<float> hr = h, wr = w;
    if (bf16) {
      for (auto& x : hr) x = round_bf16(x);
      for (auto& x : wr) x = round_bf16(x);
    }
    // CPU references on the same (rounded) inputs
    std::vector<float> lp(n), gh(n * d), gw(v * d);
    REQUIRE(vp::linear_token_logprobs(f32(hr, {n, d}), f32(wr, {v, d}), i32(tg), f32(lp)).ok());
    REQUIRE(vp::linear_token_logprobs_backward(f32(dl), f32(hr, {n, d}), f32(wr, {v, d}), i32(tg), f32(gh, {n, d}),
                                               f32(gw, {v, d})).ok());
    std::vector<double> lpd(lp.begin(), lp.end());
    auto old = jitter(lpd, 6, 0.3f);
    vp::LinearGrpoInputs li;
    li.hidden = f32(hr, {n, d});
    li.weight = f32(wr, {v, d});
    li.targets = i32(tg);
    li.old_logprobs = f32(old);
    li.advantages = f32(adv);
    li.cu_seqlens = i32(cu);
    std::vector<float> ggh(n * d), ggw(v * d);
    vp::GrpoStats cst;
    REQUIRE(vp::linear_grpo_loss(li, {}, f32(ggh, {n, d}), f32(ggw, {v, d}), TensorView(), &cst).ok());

    const DType dt = bf16 ? DType::kBFloat16 : DType::kFloat32;
    Dev h32(h), w32(w), dh_dev(static_cast<size_t>(n * d) * 4), dw_dev(static_cast<size_t>(v * d) * 4);
    Dev hd(static_cast<size_t>(n * d) * vp::dtype_size(dt)), wd(static_cast<size_t>(v * d) * vp::dtype_size(dt));
    REQUIRE(vp::cuda::convert(dview(h32, {n, d}, DType::kFloat32), dview(hd, {n, d}, dt)).ok());
    REQUIRE(vp::cuda::convert(dview(w32, {v, d}, DType::kFloat32), dview(wd, {v, d}, dt)).ok());
    Dev tgd(tg), dld(dl), outd(static_cast<size_t>(n) * 4), oldd(old), advd(adv), cud(cu);
    REQUIRE(vp::linear_token_logprobs(dview(hd, {n, d}, dt), dview(wd, {v, d}, dt), dview(tgd, {n}, DType::kInt32),
                                      dview(outd, {n}, DType::kFloat32)).ok());
    CHECK(vptest::rel_error(outd.get<float>(n), lp) <= tol);
    REQUIRE(vp::linear_token_logprobs_backward(dview(dld, {n}, DType::kFloat32), dview(hd, {n, d}, dt),
                                               dview(wd, {v, d}, dt), dview(tgd, {n}, DType::kInt32),
                                               dview(dh_dev, {n, d}, dt), dview(dw_dev, {v, d}, dt)).ok());
    Dev dh32(static_cast<size_t>(n * d) * 4), dw32(static_cast<size_t>(v * d) * 4);
    REQUIRE(vp::cuda::convert(dview(dh_dev, {n, d}, dt), dview(dh32, {n, d}, DType::kFloat32)).ok());
    REQUIRE(vp::cuda::convert(dview(dw_dev, {v, d}, dt), dview(dw32, {v, d}, DType::kFloat32)).ok());
    CHECK(vptest::rel_error(dh32.get<float>(n * d), gh) <= tol);
    CHECK(vptest::rel_error(dw32.get<float>(v * d), gw) <= tol);
    vp::LinearGrpoInputs ld;
    ld.hidden = dview(hd, {n, d}, dt);
    ld.weight = dview(wd, {v, d}, dt);
    ld.targets = dview(tgd, {n}, DType::kInt32);
    ld.old_logprobs = dview(oldd, {n}, DType::kFloat32);
    ld.advantages = dview(advd, {n}, DType::kFloat32);
    ld.cu_seqlens = dview(cud, {static_cast<int64_t>(cu.size())}, DType::kInt32);
    vp::GrpoStats gst;
    REQUIRE(vp::linear_grpo_loss(ld, {}, dview(dh_dev, {n, d}, dt), dview(dw_dev, {v, d}, dt), TensorView(), &gst).ok());
    REQUIRE(vp::cuda::convert(dview(dh_dev, {n, d}, dt), dview(dh32, {n, d}, DType::kFloat32)).ok());
    CHECK(vptest::rel_error(dh32.get<float>(n * d), ggh) <= tol);
    CHECK(std::abs(gst.loss - cst.loss) <= tol * std::abs(cst.loss) + 1e-6);
  }
  // rewards and advantages
  auto r = vptest::random_floats(4096, 8);
  std::vector<float> a_cpu(4096);
  REQUIRE(vp::group_advantages(f32(r), 8, vp::AdvantageScale::kBatch, 1e-4, f32(a_cpu)).ok());
  Dev rd(r), ad(static_cast<size_t>(4096) * 4);
  REQUIRE(vp::group_advantages(dview(rd, {4096}, DType::kFloat32), 8, vp::AdvantageScale::kBatch, 1e-4,
                               dview(ad, {4096}, DType::kFloat32)).ok());
  CHECK(vptest::rel_error(ad.get<float>(4096), a_cpu) <= 1e-6);
  auto dg = vptest::random_floats(4096, 9);
  std::vector<float> c_cpu(4096);
  REQUIRE(vp::comparative_rewards(f32(r), f32(dg), 8, {}, f32(c_cpu)).ok());
  Dev dgd(dg);
  REQUIRE(vp::comparative_rewards(dview(rd, {4096}, DType::kFloat32), dview(dgd, {4096}, DType::kFloat32), 8, {},
                                  dview(ad, {4096}, DType::kFloat32)).ok());
  CHECK(vptest::rel_error(ad.get<float>(4096), c_cpu) <= 1e-6);
}
