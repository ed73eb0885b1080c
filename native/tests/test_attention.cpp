// Fused attention against a float64 reference: head dims 16..256, lengths 1..1000,
// mixed-length batches with empty sequences, causal with Tq != Tk, grouped-query
// heads, rows that see no key; every ISA path, 1 and 2 threads; a finite-
// difference gradient check; validation errors; the memory bound at T = 8192.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/attention.h"
#include "vp/model_kernels.h"
#include "vp/cuda.h"
#include "vp/thread_pool.h"

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Case {
  std::vector<int32_t> lq, lk;  // per-sequence lengths (lk empty: same as lq, cuSeqlensK not passed)
  int64_t H = 1, Hkv = 1, D = 16;
  bool causal = false;
  bool no_cu = false;  // pass no cu_seqlens at all (one sequence)
  float scale = 0.0f;  // 0: default
};

struct Problem {
  Case c;
  std::vector<int32_t> cuq, cuk;
  int64_t tq = 0, tk = 0;
  std::vector<float> q, k, v, dout;
};

Problem make(const Case& c, uint64_t seed) {
  Problem p;
  p.c = c;
  p.cuq.push_back(0);
  for (int32_t l : c.lq) p.cuq.push_back(p.cuq.back() + l);
  const auto& lk = c.lk.empty() ? c.lq : c.lk;
  p.cuk.push_back(0);
  for (int32_t l : lk) p.cuk.push_back(p.cuk.back() + l);
  p.tq = p.cuq.back();
  p.tk = p.cuk.back();
  p.q = vptest::random_floats(p.tq * c.H * c.D, seed, -1.5f, 1.5f);
  p.k = vptest::random_floats(p.tk * c.Hkv * c.D, seed + 1, -1.5f, 1.5f);
  p.v = vptest::random_floats(p.tk * c.Hkv * c.D, seed + 2);
  p.dout = vptest::random_floats(p.tq * c.H * c.D, seed + 3);
  return p;
}

double scale_of(const Case& c) { return c.scale != 0.0f ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.D)); }

struct Ref {
  std::vector<double> out, lse, dq, dk, dv;
};

// float64 reference, straight from the definition.
Ref reference(const Problem& p, bool backward) {
  const Case& c = p.c;
  const int64_t H = c.H, Hkv = c.Hkv, D = c.D, G = H / Hkv;
  const double sc = scale_of(c);
  Ref r;
  r.out.assign(p.tq * H * D, 0.0);
  r.lse.assign(H * p.tq, -std::numeric_limits<double>::infinity());
  if (backward) {
    r.dq.assign(p.tq * H * D, 0.0);
    r.dk.assign(p.tk * Hkv * D, 0.0);
    r.dv.assign(p.tk * Hkv * D, 0.0);
  }
  std::vector<double> s, pr, dp;
  for (size_t b = 0; b + 1 < p.cuq.size(); ++b) {
    const int64_t q0 = p.cuq[b], Tq = p.cuq[b + 1] - q0, k0 = p.cuk[b], Tk = p.cuk[b + 1] - k0;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t hk = h / G;
      for (int64_t i = 0; i < Tq; ++i) {
        int64_t nvis = c.causal ? std::clamp<int64_t>(i + (Tk - Tq) + 1, 0, Tk) : Tk;
        if (nvis == 0) continue;
        const float* qi = &p.q[((q0 + i) * H + h) * D];
        s.assign(nvis, 0.0);
        double m = -1e300;
        for (int64_t j = 0; j < nvis; ++j) {
          const float* kj = &p.k[((k0 + j) * Hkv + hk) * D];
          double acc = 0.0;
          for (int64_t d = 0; d < D; ++d) acc += static_cast<double>(qi[d]) * kj[d];
          s[j] = acc * sc;
          m = std::max(m, s[j]);
        }
        double l = 0.0;
        pr.assign(nvis, 0.0);
        for (int64_t j = 0; j < nvis; ++j) l += (pr[j] = std::exp(s[j] - m));
        for (int64_t j = 0; j < nvis; ++j) pr[j] /= l;
        r.lse[h * p.tq + q0 + i] = m + std::log(l);
        double* oi = &r.out[((q0 + i) * H + h) * D];
        for (int64_t j = 0; j < nvis; ++j) {
          const float* vj = &p.v[((k0 + j) * Hkv + hk) * D];
          for (int64_t d = 0; d < D; ++d) oi[d] += pr[j] * vj[d];
        }
        if (!backward) continue;
        const float* doi = &p.dout[((q0 + i) * H + h) * D];
        dp.assign(nvis, 0.0);
        double delta = 0.0;
        for (int64_t j = 0; j < nvis; ++j) {
          const float* vj = &p.v[((k0 + j) * Hkv + hk) * D];
          double acc = 0.0;
          for (int64_t d = 0; d < D; ++d) acc += static_cast<double>(doi[d]) * vj[d];
          dp[j] = acc;
          delta += pr[j] * acc;
        }
        double* dqi = &r.dq[((q0 + i) * H + h) * D];
        for (int64_t j = 0; j < nvis; ++j) {
          const double ds = pr[j] * (dp[j] - delta) * sc;
          const float* kj = &p.k[((k0 + j) * Hkv + hk) * D];
          double* dkj = &r.dk[((k0 + j) * Hkv + hk) * D];
          double* dvj = &r.dv[((k0 + j) * Hkv + hk) * D];
          for (int64_t d = 0; d < D; ++d) {
            dqi[d] += ds * kj[d];
            dkj[d] += ds * qi[d];
            dvj[d] += pr[j] * doi[d];
          }
        }
      }
    }
  }
  return r;
}

struct Ours {
  std::vector<float> out, lse, dq, dk, dv;
};

vp::AttentionOptions options(const Problem& p, int threads) {
  vp::AttentionOptions o;
  if (!p.c.no_cu) {
    o.cu_seqlens_q = p.cuq.data();
    if (!p.c.lk.empty()) o.cu_seqlens_k = p.cuk.data();
    o.batch = static_cast<int64_t>(p.cuq.size()) - 1;
  }
  o.causal = p.c.causal;
  if (p.c.scale != 0.0f) o.scale = p.c.scale;
  o.threads = threads;
  return o;
}

Ours run(Problem& p, bool backward, int threads) {
  const Case& c = p.c;
  Ours o;
  o.out = vptest::poisoned(p.tq * c.H * c.D);
  o.lse = vptest::poisoned(c.H * p.tq);
  vp::TensorView q(p.q.data(), {p.tq, c.H, c.D}), k(p.k.data(), {p.tk, c.Hkv, c.D}), v(p.v.data(), {p.tk, c.Hkv, c.D});
  vp::TensorView out(o.out.data(), {p.tq, c.H, c.D}), lse(o.lse.data(), {c.H, p.tq});
  auto opts = options(p, threads);
  vp::Status st = vp::attention(q, k, v, opts, out, lse);
  REQUIRE_MESSAGE(st.ok(), st.message());
  if (!backward) return o;
  o.dq = vptest::poisoned(p.tq * c.H * c.D);
  o.dk = vptest::poisoned(p.tk * c.Hkv * c.D);
  o.dv = vptest::poisoned(p.tk * c.Hkv * c.D);
  vp::TensorView dout(p.dout.data(), {p.tq, c.H, c.D}), dq(o.dq.data(), {p.tq, c.H, c.D});
  vp::TensorView dk(o.dk.data(), {p.tk, c.Hkv, c.D}), dv(o.dv.data(), {p.tk, c.Hkv, c.D});
  st = vp::attention_backward(dout, q, k, v, out, lse, opts, dq, dk, dv);
  REQUIRE_MESSAGE(st.ok(), st.message());
  return o;
}

// Relative error of lse: -inf rows must match exactly; the rest by norm.
double lse_error(const std::vector<float>& ours, const std::vector<double>& ref) {
  std::vector<double> a, b;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isinf(ref[i])) {
      if (!(std::isinf(ours[i]) && ours[i] < 0)) return kInf;
      continue;
    }
    a.push_back(ours[i]);
    b.push_back(ref[i]);
  }
  return b.empty() ? 0.0 : vptest::rel_error(a, b);
}

std::string describe(const Case& c) {
  std::string s = "lq=[";
  for (auto l : c.lq) s += std::to_string(l) + ",";
  s += "] lk=[";
  for (auto l : c.lk) s += std::to_string(l) + ",";
  return s + "] H=" + std::to_string(c.H) + " Hkv=" + std::to_string(c.Hkv) + " D=" + std::to_string(c.D) +
         (c.causal ? " causal" : "") + (c.no_cu ? " no-cu" : "");
}

void check_case(const Case& c, uint64_t seed, bool backward, int threads, double tol = 1e-5) {
  Problem p = make(c, seed);
  Ref r = reference(p, backward);
  Ours o = run(p, backward, threads);
  CAPTURE(describe(c));
  CAPTURE(threads);
  CAPTURE(vp::isa_name(vp::active_isa()));
  if (std::getenv("VP_TEST_VERBOSE")) std::printf("%-60s isa=%s thr=%d out %.2e lse %.2e", describe(c).c_str(), vp::isa_name(vp::active_isa()), threads, vptest::rel_error(o.out, r.out), lse_error(o.lse, r.lse));
  if (std::getenv("VP_TEST_VERBOSE") && backward) std::printf(" dq %.2e dk %.2e dv %.2e", vptest::rel_error(o.dq, r.dq), vptest::rel_error(o.dk, r.dk), vptest::rel_error(o.dv, r.dv));
  if (std::getenv("VP_TEST_VERBOSE")) std::printf("\n");
  CHECK(vptest::rel_error(o.out, r.out) <= tol);
  CHECK(lse_error(o.lse, r.lse) <= tol);
  // rows with no visible key: exactly 0 in out
  if (!backward) return;
  CHECK(vptest::rel_error(o.dq, r.dq) <= tol);
  CHECK(vptest::rel_error(o.dk, r.dk) <= tol);
  CHECK(vptest::rel_error(o.dv, r.dv) <= tol);
}

}  // namespace

TEST_CASE("attention: every head dim on a mixed-length batch with an empty sequence") {
  uint64_t seed = 1000;
  for (int64_t D : {16, 32, 64, 80, 128, 256})
    for (bool causal : {false, true}) {
      Case c;
      c.lq = {17, 0, 129, 1, 128, 127};
      c.H = 4;
      c.Hkv = 2;
      c.D = D;
      c.causal = causal;
      check_case(c, seed += 10, true, 2);
    }
}

TEST_CASE("attention: single sequences of every length, causal and not") {
  uint64_t seed = 2000;
  for (int32_t T : {1, 17, 127, 128, 129, 1000})
    for (bool causal : {false, true}) {
      Case c;
      c.lq = {T};
      c.H = 2;
      c.Hkv = 1;
      c.D = 64;
      c.causal = causal;
      c.no_cu = (T % 2 == 1);
      check_case(c, seed += 10, true, 2);
    }
}

TEST_CASE("attention: long sequence with head dim 256 and 80") {
  for (int64_t D : {80, 256}) {
    Case c;
    c.lq = {1000};
    c.H = 2;
    c.Hkv = 2;
    c.D = D;
    c.causal = D == 256;
    check_case(c, 2500 + D, true, 2);
  }
}

TEST_CASE("attention: the forward's head-major K/V copy, in two groups of KV heads, on a grouped-query batch") {
  // K and V of 1233 keys x 2 KV heads x D 256 are 5 MB: over the 2 MB from which the
  // forward copies them head-major, and 2.5 MB a head, so the 4 MB copy holds one
  // head at a time (two groups).
  uint64_t seed = 2800;
  for (bool causal : {false, true}) {
    Case c;
    c.lq = {500, 700, 0, 33};
    c.H = 4;
    c.Hkv = 2;
    c.D = 256;
    c.causal = causal;
    check_case(c, seed += 10, false, causal ? 1 : 2);
  }
}

TEST_CASE("attention: grouped-query heads H/Hkv = 1, 2, 4, 8") {
  uint64_t seed = 3000;
  for (int64_t G : {1, 2, 4, 8})
    for (bool causal : {false, true}) {
      Case c;
      c.lq = {33, 100, 0, 7};
      c.Hkv = 2;
      c.H = 2 * G;
      c.D = 32;
      c.causal = causal;
      check_case(c, seed += 10, true, 2);
    }
}

TEST_CASE("attention: causal with Tq != Tk, rows that see no key, empty K") {
  uint64_t seed = 4000;
  Case c;
  c.lq = {5, 129, 1, 0, 64, 40, 3};
  c.lk = {17, 100, 0, 3, 200, 1, 0};
  c.H = 4;
  c.Hkv = 1;
  c.D = 64;
  for (bool causal : {true, false}) {
    c.causal = causal;
    check_case(c, seed += 10, true, 2);
  }
  // Explicitly: rows with no visible key give out = 0 and lse = -inf.
  c.causal = true;
  Problem p = make(c, 77);
  Ours o = run(p, true, 2);
  // sequence 1 (Tq = 129, Tk = 100): its first 29 rows see nothing
  for (int64_t i = 0; i < 29; ++i)
    for (int64_t h = 0; h < c.H; ++h) {
      const int64_t row = p.cuq[1] + i;
      CHECK(std::isinf(o.lse[h * p.tq + row]));
      for (int64_t d = 0; d < c.D; ++d) {
        CHECK(o.out[(row * c.H + h) * c.D + d] == 0.0f);
        CHECK(o.dq[(row * c.H + h) * c.D + d] == 0.0f);
      }
    }
  CHECK(!std::isinf(o.lse[p.cuq[1] + 29]));
}

TEST_CASE("attention: every ISA path, 1 and 2 threads, custom scale") {
  vptest::BackendScope scope;
  uint64_t seed = 5000;
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    for (int threads : {1, 2}) {
      for (int64_t D : {16, 72, 128}) {
        Case c;
        c.lq = {1, 70, 0, 200};
        c.lk = {9, 70, 5, 150};
        c.H = 4;
        c.Hkv = 2;
        c.D = D;
        c.causal = (D != 72);
        c.scale = D == 128 ? 0.3f : 0.0f;
        check_case(c, seed += 10, true, threads);
      }
      Case one;  // a single head: the backward splits the key range across threads
      one.lq = {300};
      one.D = 48;
      one.causal = threads == 2;
      check_case(one, seed += 10, true, threads);
    }
  }
}

namespace {

// Three sequences (33, 70 and 90 query rows; 33, 80 and 90 keys), 4 heads on 2 KV heads.
Case nonfinite_case(int64_t D, bool causal) {
  Case c;
  c.lq = {33, 70, 90};
  c.lk = {33, 80, 90};
  c.H = 4;
  c.Hkv = 2;
  c.D = D;
  c.causal = causal;
  return c;
}

// NaN in a q row and in a k row, +inf and -inf in v, placed where some rows see them and some do not.
void make_nonfinite(Problem& p) {
  const Case& c = p.c;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  p.q[((p.cuq[0] + 5) * c.H + 1) * c.D + 3] = nan;                     // seq 0, row 5, head 1
  p.k[((p.cuk[1] + 40) * c.Hkv + 0) * c.D + 7] = nan;                  // seq 1, key 40, kv head 0
  p.v[((p.cuk[2] + 3) * c.Hkv + 1) * c.D + 2] = kInf;                  // seq 2, key 3, kv head 1, feature 2
  p.v[((p.cuk[2] + 60) * c.Hkv + 0) * c.D + c.D - 1] = -kInf;          // seq 2, key 60, kv head 0, last feature
}

// Where the float64 reference (over the keys each row sees) is not finite, ours must be NaN or that infinity
// (ours gives NaN); elsewhere the usual relative error. Returns the count of non-finite reference values.
size_t check_nonfinite(const Ours& o, const Ref& r, double tol) {
  std::vector<double> a, b;
  size_t bad = 0;
  for (size_t i = 0; i < r.out.size(); ++i) {
    if (!std::isfinite(r.out[i])) {
      ++bad;
      CHECK_MESSAGE(std::isnan(o.out[i]), "out[" << i << "] = " << o.out[i] << ", reference " << r.out[i]);
    } else {
      a.push_back(o.out[i]);
      b.push_back(r.out[i]);
    }
  }
  CHECK(vptest::rel_error(a, b) <= tol);
  for (size_t i = 0; i < r.lse.size(); ++i) {
    if (std::isnan(r.lse[i])) CHECK_MESSAGE(std::isnan(o.lse[i]), "lse[" << i << "] = " << o.lse[i]);
    else if (std::isinf(r.lse[i])) CHECK(o.lse[i] == -kInf);
    else CHECK(std::fabs(o.lse[i] - r.lse[i]) <= 1e-4 * std::max(1.0, std::fabs(r.lse[i])));
  }
  return bad;
}

}  // namespace

TEST_CASE("attention: NaN and infinity in q, k, v reach exactly the outputs that see them (every ISA, causal or not)") {
  vptest::BackendScope scope;
  uint64_t seed = 5500;
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    for (bool causal : {false, true})
      for (int threads : {1, 2}) {
        const Case c = nonfinite_case(24, causal);
        Problem p = make(c, seed += 10);
        make_nonfinite(p);
        Ref r = reference(p, false);
        Ours o = run(p, false, threads);
        CAPTURE(vp::isa_name(vp::active_isa()));
        CAPTURE(causal);
        const size_t bad = check_nonfinite(o, r, 1e-5);
        // The poisoned positions: all of row 5's head 1; every row of seq 1 that sees key 40 (heads 0, 1);
        // feature 2 of heads 2, 3 and the last feature of heads 0, 1 in the rows of seq 2 that see keys 3 / 60.
        const size_t seq1 = causal ? 70 - 30 : 70;   // rows i with i + 10 >= 40
        const size_t seq2a = causal ? 90 - 3 : 90, seq2b = causal ? 90 - 60 : 90;
        CHECK(bad == c.D + seq1 * 2 * c.D + seq2a * 2 + seq2b * 2);
      }
  }
  // All finite: nothing changes (the same numbers as before the scan).
  Case c;
  c.lq = {50};
  c.H = 2;
  c.D = 32;
  c.causal = true;
  check_case(c, 5600, false, 2);
}

TEST_CASE("decode attention (generation with a KV cache): NaN in q or a cached key, infinity in a cached value, propagate") {
  // Two rows (sequences), H = 2 query heads on one KV head, D = 8, 5 and 3 cached keys.
  const int64_t H = 2, Hkv = 1, D = 8;
  const std::vector<int32_t> base = {0, 5}, nkeys = {5, 3};
  std::vector<float> q = vptest::random_floats(2 * H * D, 77), kc = vptest::random_floats(8 * D, 78), vc = vptest::random_floats(8 * D, 79);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto run_decode = [&]() {
    std::vector<float> out = vptest::poisoned(2 * H * D);
    REQUIRE(vp::decode_attention(q.data(), kc.data(), vc.data(), base.data(), nkeys.data(), 2, H, Hkv, D, 0.35f, 5, out.data()).ok());
    return out;
  };
  std::vector<float> out = run_decode();
  for (float x : out) CHECK(std::isfinite(x));
  kc[2 * D + 1] = nan;  // row 0's key 2: both heads of row 0, not row 1
  vc[6 * D + 4] = kInf;  // row 1's key 1, feature 4
  out = run_decode();
  for (int64_t e = 0; e < H * D; ++e) CHECK(std::isnan(out[e]));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t d = 0; d < D; ++d) CHECK(std::isfinite(out[H * D + h * D + d]) == (d != 4));
  q[H * D + D + 2] = nan;  // row 1, head 1
  out = run_decode();
  for (int64_t d = 0; d < D; ++d) CHECK(std::isnan(out[H * D + D + d]));
}

TEST_CASE("attention: the backward reference agrees with finite differences, and so do our gradients") {
  // loss = sum(out * dout) for fixed random dout: d loss / dx by central differences.
  for (bool causal : {false, true}) {
    Case c;
    c.lq = {3, 6};
    c.lk = {5, 4};
    c.H = 2;
    c.Hkv = 1;
    c.D = 8;
    c.causal = causal;
    Problem p = make(c, causal ? 91 : 92);
    Ref r = reference(p, true);
    Ours o = run(p, true, 2);
    auto loss_ref = [&](const Problem& pp) {
      Ref rr = reference(pp, false);
      double s = 0.0;
      for (size_t i = 0; i < rr.out.size(); ++i) s += rr.out[i] * pp.dout[i];
      return s;
    };
    auto loss_ours = [&](Problem& pp) {
      Ours oo = run(pp, false, 2);
      double s = 0.0;
      for (size_t i = 0; i < oo.out.size(); ++i) s += static_cast<double>(oo.out[i]) * pp.dout[i];
      return s;
    };
    struct Which {
      std::vector<float> Problem::*x;
      const std::vector<double>* ref;
      const std::vector<float>* ours;
    };
    for (Which w : {Which{&Problem::q, &r.dq, &o.dq}, Which{&Problem::k, &r.dk, &o.dk}, Which{&Problem::v, &r.dv, &o.dv}}) {
      std::vector<double> fd_ref, fd_ours;
      auto& x = p.*(w.x);
      for (size_t i = 0; i < x.size(); ++i) {
        const float x0 = x[i];
        // float64 loss with a small step: checks the reference's formulas tightly
        const float e1 = 1e-3f;
        x[i] = x0 + e1;
        double lp = loss_ref(p);
        x[i] = x0 - e1;
        double lm = loss_ref(p);
        fd_ref.push_back((lp - lm) / (static_cast<double>(x0 + e1) - static_cast<double>(x0 - e1)));
        // our float32 forward with a larger step: checks our gradients directly
        const float e2 = 2e-2f;
        x[i] = x0 + e2;
        lp = loss_ours(p);
        x[i] = x0 - e2;
        lm = loss_ours(p);
        fd_ours.push_back((lp - lm) / (static_cast<double>(x0 + e2) - static_cast<double>(x0 - e2)));
        x[i] = x0;
      }
      CAPTURE(causal);
      CHECK(vptest::rel_error(*w.ref, fd_ref) <= 1e-5);
      CHECK(vptest::rel_error(*w.ours, fd_ours) <= 2e-3);
    }
  }
}

TEST_CASE("attention: invalid calls are refused with a message naming the argument") {
  std::vector<float> buf(4096, 0.0f);
  float* d = buf.data();
  vp::TensorView q(d, {4, 2, 8}), k(d, {4, 1, 8}), v(d, {4, 1, 8}), out(d, {4, 2, 8}), lse(d, {2, 4});
  vp::AttentionOptions o;
  auto msg = [](const vp::Status& s) { return s.message(); };
  CHECK(vp::attention(q, k, v, o, out, lse).ok());
  vp::Status s = vp::attention(vp::TensorView(d, {4, 16}), k, v, o, out, lse);
  CHECK(!s.ok());
  CHECK(msg(s).find("q must be 3-D") != std::string::npos);
  s = vp::attention(vp::TensorView(d, {4, 3, 8}), vp::TensorView(d, {4, 2, 8}), vp::TensorView(d, {4, 2, 8}), o,
                    vp::TensorView(d, {4, 3, 8}), vp::TensorView(d, {3, 4}));
  CHECK(msg(s).find("multiple of the KV heads") != std::string::npos);
  s = vp::attention(vp::TensorView(d, {1, 1, 257}), vp::TensorView(d, {1, 1, 257}), vp::TensorView(d, {1, 1, 257}), o,
                    vp::TensorView(d, {1, 1, 257}), vp::TensorView(d, {1, 1}));
  CHECK(msg(s).find("head dim") != std::string::npos);
  s = vp::attention(q, k, vp::TensorView(d, {3, 1, 8}), o, out, lse);
  CHECK(msg(s).find("v must be") != std::string::npos);
  s = vp::attention(q, k, v, o, out, vp::TensorView(d, {4, 2}));
  CHECK(msg(s).find("lse must be") != std::string::npos);
  s = vp::attention(q, k, v, o, vp::TensorView(d, {4, 2, 7}), lse);
  CHECK(msg(s).find("out must have shape") != std::string::npos);
  int32_t bad_start[] = {1, 4};
  o.cu_seqlens_q = bad_start;
  o.batch = 1;
  s = vp::attention(q, k, v, o, out, lse);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(msg(s).find("cuSeqlensQ[0]") != std::string::npos);
  int32_t decreasing[] = {0, 3, 2, 4};
  o.cu_seqlens_q = decreasing;
  o.batch = 3;
  s = vp::attention(q, k, v, o, out, lse);
  CHECK(msg(s).find("cuSeqlensQ[2]") != std::string::npos);
  int32_t short_total[] = {0, 3};
  o.cu_seqlens_q = short_total;
  o.batch = 1;
  s = vp::attention(q, k, v, o, out, lse);
  CHECK(msg(s).find("total row count") != std::string::npos);
  int32_t okq[] = {0, 4}, badk[] = {0, 5};
  o.cu_seqlens_q = okq;
  o.cu_seqlens_k = badk;
  s = vp::attention(q, k, v, o, out, lse);
  CHECK(msg(s).find("cuSeqlensK[1]") != std::string::npos);
  o = vp::AttentionOptions();
  o.cu_seqlens_q = okq;
  o.batch = 1;
  s = vp::attention(q, vp::TensorView(d, {5, 1, 8}), vp::TensorView(d, {5, 1, 8}), o, out, lse);
  CHECK(msg(s).find("without cuSeqlensK") != std::string::npos);
  o = vp::AttentionOptions();
  o.scale = std::numeric_limits<float>::quiet_NaN();
  CHECK(msg(vp::attention(q, k, v, o, out, lse)).find("scale") != std::string::npos);
  o = vp::AttentionOptions();
  s = vp::attention(vp::TensorView(d, {4, 2, 8}, vp::DType::kBFloat16), vp::TensorView(d, {4, 1, 8}, vp::DType::kBFloat16),
                    vp::TensorView(d, {4, 1, 8}, vp::DType::kBFloat16), o, vp::TensorView(d, {4, 2, 8}, vp::DType::kBFloat16),
                    lse);
  CHECK(msg(s).find("float32") != std::string::npos);
  s = vp::attention_backward(q, q, k, v, out, lse, o, q, k, vp::TensorView(d, {4, 2, 8}));
  CHECK(msg(s).find("dv must have shape") != std::string::npos);
}

TEST_CASE("attention: T = 8192, H = 8, D = 64 forward and backward stay within 64 MB beyond inputs and outputs") {
#if defined(__SANITIZE_ADDRESS__)
  // ASan's shadow memory and quarantine would dominate RSS: a smaller run, no RSS bound.
  const int64_t T = 1024, H = 8, D = 64;
  const bool measure = false;
#else
  const int64_t T = 8192, H = 8, D = 64;
  const bool measure = true;
#endif
  const size_t n = static_cast<size_t>(T * H * D);
  std::vector<float> q = vptest::random_floats(n, 1), k = vptest::random_floats(n, 2), v = vptest::random_floats(n, 3),
                     dout = vptest::random_floats(n, 4);
  std::vector<float> out(n, 0.0f), lse(H * T, 0.0f), dq(n, 0.0f), dk(n, 0.0f), dv(n, 0.0f);
  auto status_kb = [](const char* key) -> long {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::strlen(key)));
    return -1;
  };
  // Reset the peak-RSS mark (Linux >= 4.0), so VmHWM measures this test alone.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  const long before = status_kb("VmRSS:");
  const long peak0 = status_kb("VmHWM:");
  vp::AttentionOptions o;
  o.causal = false;
  vp::TensorView tq(q.data(), {T, H, D}), tk(k.data(), {T, H, D}), tv(v.data(), {T, H, D});
  vp::TensorView to(out.data(), {T, H, D}), tl(lse.data(), {H, T});
  REQUIRE(vp::attention(tq, tk, tv, o, to, tl).ok());
  vp::TensorView tdo(dout.data(), {T, H, D}), tdq(dq.data(), {T, H, D}), tdk(dk.data(), {T, H, D}), tdv(dv.data(), {T, H, D});
  REQUIRE(vp::attention_backward(tdo, tq, tk, tv, to, tl, o, tdq, tdk, tdv).ok());
  const long peak = status_kb("VmHWM:");
  const double extra_mb = (peak - before) / 1024.0;
  MESSAGE("VmHWM before " << peak0 << " kB, VmRSS before " << before << " kB, VmHWM after " << peak << " kB");
  std::printf("attention memory: T=%lld H=8 D=64 forward+backward: peak RSS %.1f MB beyond inputs/outputs "
              "(inputs+outputs %.1f MB; a T x T float matrix would be %.0f MB per head)\n",
              static_cast<long long>(T), extra_mb, 9.0 * n * 4 / 1048576.0, T * T * 4 / 1048576.0);
  if (measure && peak0 >= 0 && before >= 0) CHECK(extra_mb < 64.0);
  // sanity: outputs were written
  CHECK(std::isfinite(lse[0]));
  CHECK(std::isfinite(dq[n - 1]));
}

#ifdef VP_WITH_CUDA
namespace vp::cuda {
// Test hook in cuda/attention.cu: the SIMT forward for any dtype (an independent path).
Status attention_forward_simt(const AttentionProblem& p, DType dtype, const void* q, const void* k, const void* v,
                              void* out, float* lse);
}  // namespace vp::cuda
#endif

namespace {

// A device tensor of `dt` holding `host` rounded to dt; `rounded` gets the values back in float.
struct DevTensor {
  void* ptr = nullptr;
  std::vector<int64_t> shape;
  vp::DType dt = vp::DType::kFloat32;
  ~DevTensor() { vp::cuda::free_device(ptr); }
  vp::TensorView view() const {
    vp::TensorView t;
    t.data = ptr;
    t.ndim = static_cast<int>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
    t.dtype = dt;
    t.device = vp::Device::kCUDA;
    return t;
  }
  size_t numel() const {
    size_t n = 1;
    for (auto d : shape) n *= static_cast<size_t>(d);
    return n;
  }
};

void dev_alloc(DevTensor& t, std::vector<int64_t> shape, vp::DType dt) {
  t.shape = std::move(shape);
  t.dt = dt;
  REQUIRE(vp::cuda::malloc_device(&t.ptr, std::max<size_t>(t.numel(), 1) * vp::dtype_size(dt)).ok());
}

std::vector<float> download(const DevTensor& t) {
  std::vector<float> host(t.numel());
  if (host.empty()) return host;
  if (t.dt == vp::DType::kFloat32) {
    REQUIRE(vp::cuda::copy_to_host(host.data(), t.ptr, host.size() * 4).ok());
    return host;
  }
  DevTensor f;
  dev_alloc(f, t.shape, vp::DType::kFloat32);
  REQUIRE(vp::cuda::convert(t.view(), f.view()).ok());
  REQUIRE(vp::cuda::copy_to_host(host.data(), f.ptr, host.size() * 4).ok());
  return host;
}

void upload(DevTensor& t, std::vector<float>& host, std::vector<int64_t> shape, vp::DType dt) {
  dev_alloc(t, shape, dt);
  if (host.empty()) return;
  if (dt == vp::DType::kFloat32) {
    REQUIRE(vp::cuda::copy_to_device(t.ptr, host.data(), host.size() * 4).ok());
    return;
  }
  DevTensor f;
  dev_alloc(f, shape, vp::DType::kFloat32);
  REQUIRE(vp::cuda::copy_to_device(f.ptr, host.data(), host.size() * 4).ok());
  REQUIRE(vp::cuda::convert(f.view(), t.view()).ok());
  host = download(t);  // the values the GPU really sees, for the reference
}

}  // namespace

TEST_CASE("attention on CUDA: float32, bfloat16, float16 against the float64 reference") {
  if (vptest::skip_without_cuda()) return;
  uint64_t seed = 9000;
  for (vp::DType dt : {vp::DType::kFloat32, vp::DType::kBFloat16, vp::DType::kFloat16})
    for (int64_t D : {16, 64, 80, 128, 256})
      for (bool causal : {false, true}) {
        Case c;
        c.lq = {1, 130, 0, 77, 300};
        c.lk = {9, 100, 5, 77, 257};
        c.H = 4;
        c.Hkv = D == 64 ? 1 : 2;
        c.D = D;
        c.causal = causal;
        Problem p = make(c, seed += 10);
        DevTensor q, k, v, dout, out, lse, dq, dk, dv;
        upload(q, p.q, {p.tq, c.H, D}, dt);
        upload(k, p.k, {p.tk, c.Hkv, D}, dt);
        upload(v, p.v, {p.tk, c.Hkv, D}, dt);
        upload(dout, p.dout, {p.tq, c.H, D}, dt);
        dev_alloc(out, {p.tq, c.H, D}, dt);
        dev_alloc(lse, {c.H, p.tq}, vp::DType::kFloat32);
        dev_alloc(dq, {p.tq, c.H, D}, dt);
        dev_alloc(dk, {p.tk, c.Hkv, D}, dt);
        dev_alloc(dv, {p.tk, c.Hkv, D}, dt);
        auto o = options(p, 0);
        vp::Status st = vp::attention(q.view(), k.view(), v.view(), o, out.view(), lse.view());
        REQUIRE_MESSAGE(st.ok(), st.message());
        st = vp::attention_backward(dout.view(), q.view(), k.view(), v.view(), out.view(), lse.view(), o, dq.view(),
                                    dk.view(), dv.view());
        REQUIRE_MESSAGE(st.ok(), st.message());
        REQUIRE(vp::cuda::synchronize().ok());
        Ref r = reference(p, true);
        const double tol = dt == vp::DType::kFloat32 ? 1e-5 : dt == vp::DType::kBFloat16 ? 1.5e-2 : 2.5e-3;
        CAPTURE(describe(c));
        CAPTURE(vp::dtype_name(dt));
        const double eo = vptest::rel_error(download(out), r.out), el = lse_error(download(lse), r.lse);
        const double eq = vptest::rel_error(download(dq), r.dq), ek = vptest::rel_error(download(dk), r.dk),
                     ev = vptest::rel_error(download(dv), r.dv);
        MESSAGE(vp::dtype_name(dt) << " " << describe(c) << ": out " << eo << " lse " << el << " dq " << eq << " dk "
                                   << ek << " dv " << ev);
        CHECK(eo <= tol);
        CHECK(el <= tol);
        CHECK(eq <= 3 * tol);
        CHECK(ek <= 3 * tol);
        CHECK(ev <= 3 * tol);
#ifdef VP_WITH_CUDA
        if (dt != vp::DType::kFloat32) {  // the tensor-core forward against the SIMT one, same inputs
          DevTensor out2, lse2;
          dev_alloc(out2, {p.tq, c.H, D}, dt);
          dev_alloc(lse2, {c.H, p.tq}, vp::DType::kFloat32);
          vp::AttentionProblem pr;
          pr.total_q = p.tq;
          pr.total_k = p.tk;
          pr.heads = c.H;
          pr.kv_heads = c.Hkv;
          pr.head_dim = D;
          pr.batch = static_cast<int64_t>(p.cuq.size()) - 1;
          pr.cu_q = p.cuq.data();
          pr.cu_k = p.cuk.data();
          pr.causal = causal;
          pr.scale = static_cast<float>(scale_of(c));
          REQUIRE(vp::cuda::attention_forward_simt(pr, dt, q.ptr, k.ptr, v.ptr, out2.ptr, static_cast<float*>(lse2.ptr)).ok());
          CHECK(vptest::rel_error(download(out), download(out2)) <= tol);
          CHECK(lse_error(download(lse2), r.lse) <= 1e-5);
        }
#endif
      }
}

TEST_CASE("attention on CUDA: NaN and infinity in q, k, v reach every output that sees them") {
  if (!vp::cuda::available()) {
    MESSAGE("skipped: " << vp::cuda::unavailable_reason());
    return;
  }
  uint64_t seed = 9500;
  for (vp::DType dt : {vp::DType::kFloat32, vp::DType::kBFloat16})
    for (bool causal : {false, true}) {
      const Case c = nonfinite_case(64, causal);
      Problem p = make(c, seed += 10);
      make_nonfinite(p);
      DevTensor q, k, v, out, lse;
      upload(q, p.q, {p.tq, c.H, c.D}, dt);
      upload(k, p.k, {p.tk, c.Hkv, c.D}, dt);
      upload(v, p.v, {p.tk, c.Hkv, c.D}, dt);
      dev_alloc(out, {p.tq, c.H, c.D}, dt);
      dev_alloc(lse, {c.H, p.tq}, vp::DType::kFloat32);
      auto o = options(p, 0);
      vp::Status st = vp::attention(q.view(), k.view(), v.view(), o, out.view(), lse.view());
      REQUIRE_MESSAGE(st.ok(), st.message());
      REQUIRE(vp::cuda::synchronize().ok());
      Ref r = reference(p, false);
      const std::vector<float> ho = download(out), hl = download(lse);
      CAPTURE(vp::dtype_name(dt));
      CAPTURE(causal);
      size_t missing = 0;
      for (size_t i = 0; i < r.out.size(); ++i) missing += !std::isfinite(r.out[i]) && !std::isnan(ho[i]);
      for (size_t i = 0; i < r.lse.size(); ++i) missing += std::isnan(r.lse[i]) && !std::isnan(hl[i]);
      CHECK(missing == 0);
      // Sequence 0 holds only the NaN of row 5, head 1: every other output of it is finite and right.
      std::vector<double> a, b;
      for (int64_t i = 0; i < 33; ++i)
        for (int64_t h = 0; h < c.H; ++h)
          if (!(i == 5 && h == 1))
            for (int64_t d = 0; d < c.D; ++d) {
              a.push_back(ho[(i * c.H + h) * c.D + d]);
              b.push_back(r.out[(i * c.H + h) * c.D + d]);
            }
      CHECK(vptest::rel_error(a, b) <= (dt == vp::DType::kFloat32 ? 1e-5 : 1.5e-2));
    }
}

TEST_CASE("attention: CUDA path skips cleanly without a GPU") {
  if (vp::cuda::available()) {
    MESSAGE("a CUDA device is present: the GPU checks run in \"attention on CUDA: float32, bfloat16, float16 ...\"");
    return;
  }
  std::vector<float> buf(64, 0.0f);
  vp::TensorView q(buf.data(), {2, 1, 8}, vp::DType::kBFloat16, vp::Device::kCUDA);
  vp::TensorView lse(buf.data(), {1, 2}, vp::DType::kFloat32, vp::Device::kCUDA);
  vp::Status s = vp::attention(q, q, q, vp::AttentionOptions(), q, lse);
  CHECK(s.code() == vp::StatusCode::kUnavailable);
  MESSAGE("skipped the CUDA attention checks: " << s.message());
}
