// VideoLM layer kernels (vp/layers.h) against float64 references, with the
// backward passes checked against central finite differences of the float64
// reference forward (so the derivation, not just the code, is tested). Every
// ISA path this CPU has, 1 and 2 threads; outputs are NaN-poisoned first.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "ops/layers/layers_kernels.h"
#include "test_util.h"
#include "vp/layers.h"
#include "vp/thread_pool.h"

namespace {

using dvec = std::vector<double>;
using fvec = std::vector<float>;

dvec to_d(const fvec& v) { return dvec(v.begin(), v.end()); }

using vptest::fd_grad;

// ---- references ------------------------------------------------------------

dvec rmsnorm_ref(const dvec& x, const dvec& g, int64_t rows, int64_t d, double eps) {
  dvec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += x[r * d + j] * x[r * d + j];
    double rs = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t j = 0; j < d; ++j) y[r * d + j] = x[r * d + j] * rs * g[j];
  }
  return y;
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

dvec rope_ref(const dvec& x, const std::vector<int32_t>& pos, int64_t t, int64_t h, int64_t d,
              double theta, bool inverse) {
  dvec o(x.size());
  const int64_t half = d / 2;
  for (int64_t a = 0; a < t; ++a)
    for (int64_t hh = 0; hh < h; ++hh)
      for (int64_t i = 0; i < half; ++i) {
        double ang = pos[a] * std::pow(theta, -2.0 * i / d);
        double c = std::cos(ang), s = inverse ? -std::sin(ang) : std::sin(ang);
        const double* xi = &x[(a * h + hh) * d];
        double* oi = &o[(a * h + hh) * d];
        oi[i] = xi[i] * c - xi[i + half] * s;
        oi[i + half] = xi[i + half] * c + xi[i] * s;
      }
  return o;
}

dvec linear_ref(const dvec& x, const dvec& w, const dvec* b, int64_t n, int64_t in, int64_t out) {
  dvec y(n * out);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * w[o * in + i];
      y[r * out + o] = s;
    }
  return y;
}

double ce_ref(const dvec& logits, const std::vector<int32_t>& t, int64_t n, int64_t v) {
  double tot = 0;
  int64_t cnt = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (t[r] < 0) continue;
    double m = -1e300;
    for (int64_t j = 0; j < v; ++j) m = std::max(m, logits[r * v + j]);
    double s = 0;
    for (int64_t j = 0; j < v; ++j) s += std::exp(logits[r * v + j] - m);
    tot += m + std::log(s) - logits[r * v + t[r]];
    ++cnt;
  }
  return cnt ? tot / cnt : 0.0;
}

}  // namespace

TEST_CASE("layers: the polynomial exp is accurate on every ISA") {
  vptest::BackendScope scope;
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    const auto& k = vp::detail::layer_kernels();
    double worst = 0;
    for (double x = -87.0; x <= 88.0; x += 0.001) {
      float xf = static_cast<float>(x);
      double ref = std::exp(static_cast<double>(xf));
      worst = std::max(worst, std::abs(k.exp_one(xf) - ref) / ref);
    }
    CAPTURE(vp::isa_name(isa));
    CHECK(worst < 1e-6);
    CHECK(k.exp_one(-200.0f) == 0.0f);
    CHECK(k.exp_one(0.0f) == 1.0f);
  }
}

TEST_CASE("layers: rmsnorm forward/backward match float64 and finite differences") {
  vptest::for_each_backend([] {
    for (auto [rows, d] : {std::pair<int64_t, int64_t>{1, 2}, {3, 7}, {5, 33}, {17, 64}, {40, 130}}) {
      CAPTURE(rows);
      CAPTURE(d);
      const float eps = 1e-5f;
      fvec x = vptest::random_floats(rows * d, 11 + d), g = vptest::random_floats(d, 12 + d, 0.5f, 1.5f);
      fvec y = vptest::poisoned(rows * d), rs = vptest::poisoned(rows);
      REQUIRE(vp::rmsnorm_forward(x.data(), g.data(), rows, d, eps, y.data(), rs.data()).ok());
      CHECK(vptest::rel_error(y, rmsnorm_ref(to_d(x), to_d(g), rows, d, eps)) < 1e-6);

      fvec dy = vptest::random_floats(rows * d, 13 + d);
      fvec dx = vptest::poisoned(rows * d), dg = vptest::poisoned(d);
      REQUIRE(vp::rmsnorm_backward(dy.data(), x.data(), g.data(), rs.data(), rows, d, eps, dx.data(),
                                   dg.data(), false).ok());
      auto gx = fd_grad([&](const dvec& xx) { return rmsnorm_ref(xx, to_d(g), rows, d, eps); }, to_d(x), to_d(dy));
      auto gg = fd_grad([&](const dvec& gg2) { return rmsnorm_ref(to_d(x), gg2, rows, d, eps); }, to_d(g), to_d(dy));
      CHECK(vptest::rel_error(dx, gx) < 1e-4);
      CHECK(vptest::rel_error(dg, gg) < 1e-4);
      // accumulate adds; rstd = null recomputes.
      fvec dg2 = dg, dx2 = vptest::poisoned(rows * d);
      REQUIRE(vp::rmsnorm_backward(dy.data(), x.data(), g.data(), nullptr, rows, d, eps, dx2.data(),
                                   dg2.data(), true).ok());
      for (int64_t j = 0; j < d; ++j) CHECK(dg2[j] == doctest::Approx(2 * dg[j]).epsilon(1e-5));
      CHECK(vptest::rel_error(dx2, dx) < 1e-6);
    }
  });
}

TEST_CASE("layers: rmsnorm dgain is bitwise identical for 1 and 2 threads") {
  vptest::ThreadScope ts;
  const int64_t rows = 301, d = 96;
  fvec x = vptest::random_floats(rows * d, 1), g = vptest::random_floats(d, 2), dy = vptest::random_floats(rows * d, 3);
  fvec out[2];
  for (int t : {1, 2}) {
    vp::set_num_threads(t);
    fvec dx(rows * d), dg(d);
    REQUIRE(vp::rmsnorm_backward(dy.data(), x.data(), g.data(), nullptr, rows, d, 1e-5f, dx.data(), dg.data(), false).ok());
    out[t - 1] = dg;
  }
  CHECK(std::memcmp(out[0].data(), out[1].data(), d * sizeof(float)) == 0);
}

TEST_CASE("layers: swiglu forward/backward on a fused [rows, 2*ffn] buffer") {
  vptest::for_each_backend([] {
    for (auto [rows, f] : {std::pair<int64_t, int64_t>{1, 1}, {4, 13}, {9, 40}, {3, 100}}) {
      CAPTURE(rows);
      CAPTURE(f);
      fvec gu = vptest::random_floats(rows * 2 * f, 21 + f, -4.0f, 4.0f);
      fvec h = vptest::poisoned(rows * f);
      REQUIRE(vp::swiglu_forward(gu.data(), gu.data() + f, rows, f, 2 * f, h.data()).ok());
      auto ref = [&](const dvec& in) {
        dvec o(rows * f);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < f; ++j) o[r * f + j] = silu(in[r * 2 * f + j]) * in[r * 2 * f + f + j];
        return o;
      };
      CHECK(vptest::rel_error(h, ref(to_d(gu))) < 2e-6);
      fvec dh = vptest::random_floats(rows * f, 22 + f);
      fvec dgu = vptest::poisoned(rows * 2 * f);
      REQUIRE(vp::swiglu_backward(dh.data(), gu.data(), gu.data() + f, rows, f, 2 * f, dgu.data(),
                                  dgu.data() + f).ok());
      CHECK(vptest::rel_error(dgu, fd_grad(ref, to_d(gu), to_d(dh))) < 1e-4);
    }
  });
}

TEST_CASE("layers: rope matches float64, inverts, is its own adjoint, and is relative") {
  vptest::for_each_backend([] {
    const int64_t t = 11, h = 3, d = 16;
    std::vector<int32_t> pos{0, 1, 2, 3, 0, 1, 2, 5, 100, 4000, 7};
    fvec x = vptest::random_floats(t * h * d, 31);
    fvec y = vptest::poisoned(t * h * d);
    REQUIRE(vp::rope_apply(x.data(), pos.data(), t, h, d, 10000.0f, false, y.data()).ok());
    CHECK(vptest::rel_error(y, rope_ref(to_d(x), pos, t, h, d, 10000.0, false)) < 1e-6);
    // inverse undoes it (in place)
    fvec z = y;
    REQUIRE(vp::rope_apply(z.data(), pos.data(), t, h, d, 10000.0f, true, z.data()).ok());
    CHECK(vptest::rel_error(z, x) < 1e-6);
    // backward = inverse rotation, checked against finite differences
    fvec dy = vptest::random_floats(t * h * d, 32), dx = vptest::poisoned(t * h * d);
    REQUIRE(vp::rope_apply(dy.data(), pos.data(), t, h, d, 10000.0f, true, dx.data()).ok());
    auto gx = fd_grad([&](const dvec& xx) { return rope_ref(xx, pos, t, h, d, 10000.0, false); }, to_d(x), to_d(dy));
    CHECK(vptest::rel_error(dx, gx) < 1e-5);
    // positions that repeat (packed sequences): the per-position table path
    std::vector<int32_t> packed{0, 1, 2, 3, 0, 1, 2, 0, 1, 0, 4};
    fvec yp = vptest::poisoned(t * h * d), zp = vptest::poisoned(t * h * d);
    REQUIRE(vp::rope_apply(x.data(), packed.data(), t, h, d, 10000.0f, false, yp.data()).ok());
    CHECK(vptest::rel_error(yp, rope_ref(to_d(x), packed, t, h, d, 10000.0, false)) < 1e-6);
    REQUIRE(vp::rope_apply(yp.data(), packed.data(), t, h, d, 10000.0f, true, zp.data()).ok());
    CHECK(vptest::rel_error(zp, x) < 1e-6);
  });
  // <rope(q, m), rope(k, n)> depends on m - n only.
  const int64_t d = 8;
  fvec q = vptest::random_floats(d, 41), k = vptest::random_floats(d, 42);
  auto dot_at = [&](int32_t m, int32_t n) {
    fvec a(d), b(d);
    REQUIRE(vp::rope_apply(q.data(), &m, 1, 1, d, 10000.0f, false, a.data()).ok());
    REQUIRE(vp::rope_apply(k.data(), &n, 1, 1, d, 10000.0f, false, b.data()).ok());
    double s = 0;
    for (int64_t i = 0; i < d; ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
  };
  CHECK(dot_at(7, 3) == doctest::Approx(dot_at(14, 10)).epsilon(1e-5));
  int32_t bad = -1;
  fvec o(d);
  CHECK(vp::rope_apply(q.data(), &bad, 1, 1, d, 10000.0f, false, o.data()).code() == vp::StatusCode::kOutOfRange);
  CHECK(vp::rope_apply(q.data(), &bad, 1, 1, 7, 10000.0f, false, o.data()).code() == vp::StatusCode::kInvalidArgument);
}

TEST_CASE("layers: embedding lookup and deterministic scatter-add backward") {
  vptest::for_each_backend([] {
    const int64_t vocab = 37, dim = 19, n = 200;
    fvec table = vptest::random_floats(vocab * dim, 51);
    std::vector<int32_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7 + i / 3) % (vocab - 5));  // rows >= 32 untouched
    fvec out = vptest::poisoned(n * dim);
    REQUIRE(vp::embedding_forward(table.data(), vocab, dim, ids.data(), n, out.data()).ok());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < dim; ++j) REQUIRE(out[i * dim + j] == table[ids[i] * dim + j]);
    fvec dout = vptest::random_floats(n * dim, 52);
    dvec ref(vocab * dim, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < dim; ++j) ref[ids[i] * dim + j] += dout[i * dim + j];
    fvec dt = vptest::poisoned(vocab * dim);
    REQUIRE(vp::embedding_backward(dout.data(), ids.data(), n, vocab, dim, dt.data(), false).ok());
    CHECK(vptest::rel_error(dt, ref) < 1e-6);
    for (int64_t j = 0; j < dim; ++j) CHECK(dt[36 * dim + j] == 0.0f);
    fvec dt2 = dt;
    REQUIRE(vp::embedding_backward(dout.data(), ids.data(), n, vocab, dim, dt2.data(), true).ok());
    for (size_t i = 0; i < dt.size(); ++i) REQUIRE(dt2[i] == doctest::Approx(2 * dt[i]));
  });
  // the same bits for 1 and 2 threads; bad ids rejected before anything is written
  vptest::ThreadScope ts;
  const int64_t vocab = 10, dim = 300, n = 1000;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(i % vocab);
  fvec dout = vptest::random_floats(n * dim, 53), r1(vocab * dim), r2(vocab * dim);
  vp::set_num_threads(1);
  REQUIRE(vp::embedding_backward(dout.data(), ids.data(), n, vocab, dim, r1.data(), false).ok());
  vp::set_num_threads(2);
  REQUIRE(vp::embedding_backward(dout.data(), ids.data(), n, vocab, dim, r2.data(), false).ok());
  CHECK(std::memcmp(r1.data(), r2.data(), r1.size() * sizeof(float)) == 0);
  ids[500] = 10;
  fvec untouched(vocab * dim, 7.0f);
  auto s = vp::embedding_backward(dout.data(), ids.data(), n, vocab, dim, untouched.data(), false);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("ids[500] = 10") != std::string::npos);
  CHECK(untouched[0] == 7.0f);
  ids[500] = -1;
  CHECK(vp::embedding_forward(untouched.data(), vocab, dim, ids.data(), n, dout.data()).code() == vp::StatusCode::kOutOfRange);
}

TEST_CASE("layers: linear forward/backward (x·Wᵀ + b) against finite differences") {
  vptest::for_each_backend([] {
    for (auto [n, in, out] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {5, 7, 3}, {33, 20, 17}, {64, 48, 40}}) {
      CAPTURE(n);
      CAPTURE(in);
      CAPTURE(out);
      fvec x = vptest::random_floats(n * in, 61), w = vptest::random_floats(out * in, 62), b = vptest::random_floats(out, 63);
      fvec y = vptest::poisoned(n * out);
      REQUIRE(vp::linear_forward(x.data(), w.data(), b.data(), n, in, out, y.data()).ok());
      dvec bd = to_d(b);
      CHECK(vptest::rel_error(y, linear_ref(to_d(x), to_d(w), &bd, n, in, out)) < 1e-5);
      fvec y0 = vptest::poisoned(n * out);
      REQUIRE(vp::linear_forward(x.data(), w.data(), nullptr, n, in, out, y0.data()).ok());
      CHECK(vptest::rel_error(y0, linear_ref(to_d(x), to_d(w), nullptr, n, in, out)) < 1e-5);

      fvec dy = vptest::random_floats(n * out, 64);
      fvec dx = vptest::poisoned(n * in), dw = vptest::poisoned(out * in), db = vptest::poisoned(out);
      REQUIRE(vp::linear_backward(dy.data(), x.data(), w.data(), n, in, out, dx.data(), dw.data(), db.data(), false).ok());
      auto gx = fd_grad([&](const dvec& v) { return linear_ref(v, to_d(w), &bd, n, in, out); }, to_d(x), to_d(dy));
      auto gw = fd_grad([&](const dvec& v) { return linear_ref(to_d(x), v, &bd, n, in, out); }, to_d(w), to_d(dy));
      auto gb = fd_grad([&](const dvec& v) { return linear_ref(to_d(x), to_d(w), &v, n, in, out); }, bd, to_d(dy));
      CHECK(vptest::rel_error(dx, gx) < 1e-5);
      CHECK(vptest::rel_error(dw, gw) < 1e-5);
      CHECK(vptest::rel_error(db, gb) < 1e-5);
      fvec dw2 = dw, db2 = db;
      REQUIRE(vp::linear_backward(dy.data(), x.data(), w.data(), n, in, out, nullptr, dw2.data(), db2.data(), true).ok());
      for (size_t i = 0; i < dw.size(); ++i) REQUIRE(dw2[i] == doctest::Approx(2 * dw[i]).epsilon(1e-5));
      for (size_t i = 0; i < db.size(); ++i) REQUIRE(db2[i] == doctest::Approx(2 * db[i]).epsilon(1e-5));
    }
  });
}

TEST_CASE("layers: cross-entropy with ignore index, stable on large logits") {
  vptest::for_each_backend([] {
    for (auto [n, v] : {std::pair<int64_t, int64_t>{1, 2}, {6, 11}, {13, 257}, {4, 1000}}) {
      CAPTURE(n);
      CAPTURE(v);
      fvec logits = vptest::random_floats(n * v, 71 + v, -6.0f, 6.0f);
      std::vector<int32_t> t(n);
      for (int64_t r = 0; r < n; ++r) t[r] = (r % 3 == 2) ? -1 : static_cast<int32_t>((r * 31 + 5) % v);
      float loss = NAN;
      fvec lse = vptest::poisoned(n);
      int64_t cnt = -1;
      REQUIRE(vp::cross_entropy_forward(logits.data(), t.data(), n, v, &loss, lse.data(), &cnt).ok());
      const double ref = ce_ref(to_d(logits), t, n, v);
      CHECK(loss == doctest::Approx(ref).epsilon(1e-5));
      fvec d = vptest::poisoned(n * v);
      REQUIRE(vp::cross_entropy_backward(logits.data(), t.data(), lse.data(), n, v, 1.5f, d.data()).ok());
      auto g = fd_grad([&](const dvec& l) { return dvec{ce_ref(l, t, n, v)}; }, to_d(logits), dvec{1.5});
      CHECK(vptest::rel_error(d, g) < 1e-4);
      // in place, lse recomputed
      fvec inplace = logits;
      REQUIRE(vp::cross_entropy_backward(inplace.data(), t.data(), nullptr, n, v, 1.5f, inplace.data()).ok());
      CHECK(vptest::rel_error(inplace, d) < 1e-6);
    }
  });
  // large logits: no overflow
  fvec big{1000.0f, 999.0f, -1000.0f};
  int32_t t0 = 1;
  float loss = 0;
  REQUIRE(vp::cross_entropy_forward(big.data(), &t0, 1, 3, &loss, nullptr, nullptr).ok());
  CHECK(loss == doctest::Approx(1.0 + std::log1p(std::exp(-1.0))).epsilon(1e-5));
  // all ignored: loss 0 and zero gradient
  int32_t ign = -1;
  fvec d(3, NAN);
  REQUIRE(vp::cross_entropy_forward(big.data(), &ign, 1, 3, &loss, nullptr, nullptr).ok());
  CHECK(loss == 0.0f);
  REQUIRE(vp::cross_entropy_backward(big.data(), &ign, nullptr, 1, 3, 1.0f, d.data()).ok());
  CHECK((d[0] == 0.0f && d[1] == 0.0f && d[2] == 0.0f));
  int32_t bad = 3;
  auto s = vp::cross_entropy_forward(big.data(), &bad, 1, 3, &loss, nullptr, nullptr);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("targets[0] = 3") != std::string::npos);
}

TEST_CASE("layers: patchify layout, unpatchify adjoint, patch embedding gradients") {
  vptest::for_each_backend([] {
    const int64_t F = 2, H = 8, W = 12, P = 4, feat = P * P * 3, np = F * (H / P) * (W / P), dim = 5;
    std::vector<uint8_t> frames(F * H * W * 3);
    for (size_t i = 0; i < frames.size(); ++i) frames[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
    fvec patches = vptest::poisoned(np * feat);
    REQUIRE(vp::patchify_u8(frames.data(), F, H, W, P, patches.data()).ok());
    for (int64_t f = 0; f < F; ++f)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
          for (int64_t c = 0; c < 3; ++c) {
            int64_t pidx = f * (H / P) * (W / P) + (y / P) * (W / P) + x / P;
            int64_t fi = ((y % P) * P + (x % P)) * 3 + c;
            float want = frames[((f * H + y) * W + x) * 3 + c] / 127.5f - 1.0f;
            REQUIRE(patches[pidx * feat + fi] == doctest::Approx(want));
          }
    // <patchify(a), b> == <a, unpatchify(b)>
    fvec a = vptest::random_floats(F * H * W * 3, 81), pb = vptest::random_floats(np * feat, 82);
    fvec pa(np * feat), ub = vptest::poisoned(F * H * W * 3);
    REQUIRE(vp::patchify_f32(a.data(), F, H, W, P, pa.data()).ok());
    REQUIRE(vp::unpatchify_f32(pb.data(), F, H, W, P, ub.data()).ok());
    double l = 0, r = 0;
    for (size_t i = 0; i < pa.size(); ++i) l += static_cast<double>(pa[i]) * pb[i];
    for (size_t i = 0; i < a.size(); ++i) r += static_cast<double>(a[i]) * ub[i];
    CHECK(l == doctest::Approx(r).epsilon(1e-6));
    // patch embedding forward/backward
    fvec w = vptest::random_floats(dim * feat, 83), b = vptest::random_floats(dim, 84);
    fvec emb = vptest::poisoned(np * dim), scratch(np * feat);
    REQUIRE(vp::patch_embed_forward_u8(frames.data(), F, H, W, P, w.data(), b.data(), dim, scratch.data(), emb.data()).ok());
    dvec bd = to_d(b);
    CHECK(vptest::rel_error(emb, linear_ref(to_d(patches), to_d(w), &bd, np, feat, dim)) < 1e-5);
    fvec emb2 = vptest::poisoned(np * dim);
    REQUIRE(vp::patch_embed_forward_u8(frames.data(), F, H, W, P, w.data(), b.data(), dim, nullptr, emb2.data()).ok());
    CHECK(vptest::rel_error(emb2, emb) < 1e-7);
    // float frames: the same embedding as their patches through the linear layer
    fvec ff = vptest::random_floats(F * H * W * 3, 86), ffp(np * feat), embf = vptest::poisoned(np * dim);
    REQUIRE(vp::patchify_f32(ff.data(), F, H, W, P, ffp.data()).ok());
    REQUIRE(vp::patch_embed_forward_f32(ff.data(), F, H, W, P, w.data(), b.data(), dim, nullptr, embf.data()).ok());
    CHECK(vptest::rel_error(embf, linear_ref(to_d(ffp), to_d(w), &bd, np, feat, dim)) < 1e-5);
    fvec demb = vptest::random_floats(np * dim, 85), dw = vptest::poisoned(dim * feat), db = vptest::poisoned(dim);
    REQUIRE(vp::patch_embed_backward(demb.data(), scratch.data(), np, feat, dim, dw.data(), db.data(), false).ok());
    auto gw = fd_grad([&](const dvec& v) { return linear_ref(to_d(patches), v, &bd, np, feat, dim); }, to_d(w), to_d(demb));
    auto gb = fd_grad([&](const dvec& v) { return linear_ref(to_d(patches), to_d(w), &v, np, feat, dim); }, bd, to_d(demb));
    CHECK(vptest::rel_error(dw, gw) < 1e-5);
    CHECK(vptest::rel_error(db, gb) < 1e-5);
  });
  fvec p(48);
  std::vector<uint8_t> fr(10 * 8 * 3);
  auto s = vp::patchify_u8(fr.data(), 1, 10, 8, 4, p.data());
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
  CHECK(s.message().find("multiples of the patch size 4") != std::string::npos);
}

TEST_CASE("layers: invalid sizes and null pointers are reported, not crashed on") {
  float buf[4] = {};
  CHECK(vp::rmsnorm_forward(buf, buf, 1, 0, 1e-5f, buf, nullptr).code() == vp::StatusCode::kInvalidArgument);
  CHECK(vp::rmsnorm_forward(nullptr, buf, 1, 4, 1e-5f, buf, nullptr).message().find("x is null") != std::string::npos);
  CHECK(vp::swiglu_forward(buf, buf, 1, 4, 3, buf).code() == vp::StatusCode::kInvalidArgument);
  CHECK(vp::linear_forward(buf, buf, nullptr, -1, 1, 1, buf).code() == vp::StatusCode::kInvalidArgument);
  CHECK(vp::linear_forward(buf, buf, nullptr, 0, 1, 1, nullptr).ok());
  CHECK(vp::cross_entropy_forward(buf, nullptr, 1, 4, buf, nullptr, nullptr).code() == vp::StatusCode::kInvalidArgument);
}
