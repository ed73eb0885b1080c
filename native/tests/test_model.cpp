// VideoLM configuration/layout/initialization (vp/model.h) and the attention-free
// sub-blocks (vp/blocks.h): composite gradients against central finite
// differences of float64 reference forwards written here.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/blocks.h"
#include "vp/model.h"
#include "vp/thread_pool.h"

namespace {

using dvec = std::vector<double>;
using fvec = std::vector<float>;
dvec D(const fvec& v) { return dvec(v.begin(), v.end()); }

// d/dp of sum(w * f(p)) by central differences.
dvec fd(const std::function<dvec(const dvec&)>& f, const dvec& p, const dvec& w, double h = 1e-6) {
  dvec g(p.size()), q = p;
  for (size_t i = 0; i < p.size(); ++i) {
    q[i] = p[i] + h;
    dvec a = f(q);
    q[i] = p[i] - h;
    dvec b = f(q);
    q[i] = p[i];
    double s = 0;
    for (size_t j = 0; j < a.size(); ++j) s += w[j] * (a[j] - b[j]);
    g[i] = s / (2 * h);
  }
  return g;
}

dvec rms(const dvec& x, const dvec& g, int64_t n, int64_t d, double eps) {
  dvec y(n * d);
  for (int64_t r = 0; r < n; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += x[r * d + j] * x[r * d + j];
    const double s = 1 / std::sqrt(ss / d + eps);
    for (int64_t j = 0; j < d; ++j) y[r * d + j] = x[r * d + j] * s * g[j];
  }
  return y;
}

// y[n, o] = x[n, i] · w[o, i]^T
dvec lin(const dvec& x, const dvec& w, int64_t n, int64_t in, int64_t out) {
  dvec y(n * out, 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * w[o * in + i];
      y[r * out + o] = s;
    }
  return y;
}

dvec mlp_ref(const dvec& x, const dvec& g, const dvec& wgu, const dvec& wd, int64_t n, int64_t d, int64_t f) {
  dvec xn = rms(x, g, n, d, 1e-5), gu = lin(xn, wgu, n, d, 2 * f), a(n * f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < f; ++j) {
      const double gv = gu[r * 2 * f + j];
      a[r * f + j] = gv / (1 + std::exp(-gv)) * gu[r * 2 * f + f + j];
    }
  dvec y = lin(a, wd, n, f, d);
  for (size_t i = 0; i < y.size(); ++i) y[i] += x[i];
  return y;
}

}  // namespace

TEST_CASE("model: presets, validation and the parameter layout") {
  for (const char* name : {"tiny", "small"}) {
    vp::ModelConfig c;
    REQUIRE(vp::model_preset(name, &c).ok());
    REQUIRE(vp::validate_config(c).ok());
    vp::ParamLayout l;
    REQUIRE(vp::param_layout(c, &l).ok());
    std::set<std::string> names;
    int64_t end = 0, count = 0;
    for (const auto& p : l.params) {
      CHECK(names.insert(p.name).second);
      CHECK(p.offset % 16 == 0);
      CHECK(p.offset >= end);
      end = p.offset + p.numel;
      count += p.numel;
    }
    CHECK(end <= l.total);
    CHECK(l.params.size() == 5 + 8 * static_cast<size_t>(c.layers) + 1);
    CHECK(l.find("text.embed.weight")->shape == std::vector<int64_t>{c.vocab, c.dim});
    CHECK(l.find("layers.0.attn.wk")->shape == std::vector<int64_t>{c.kv_heads * c.head_dim(), c.dim});
    CHECK(l.find("layers.0.mlp.w_gate_up")->decay);
    CHECK_FALSE(l.find("layers.0.mlp_norm.gain")->decay);
    CHECK(l.find("lm_head.weight") == nullptr);
    MESSAGE(std::string(name) << ": " << count << " parameters");
  }
  vp::ModelConfig c;
  c.tie_embeddings = false;
  vp::ParamLayout l;
  REQUIRE(vp::param_layout(c, &l).ok());
  CHECK(l.find("lm_head.weight") != nullptr);
  c = vp::ModelConfig();
  c.heads = 3;
  CHECK(vp::validate_config(c).message().find("dim 128 must be a multiple of heads 3") != std::string::npos);
  c = vp::ModelConfig();
  c.kv_heads = 3;
  CHECK(vp::validate_config(c).message().find("multiple of kv_heads 3") != std::string::npos);
  c = vp::ModelConfig();
  c.image_size = 30;
  CHECK(vp::validate_config(c).message().find("image_size 30 must be a multiple of patch_size 8") != std::string::npos);
  c = vp::ModelConfig();
  c.layers = 0;
  CHECK(vp::param_layout(c, &l).message().find("layers must be > 0") != std::string::npos);
  CHECK(vp::model_preset("huge", &c).code() == vp::StatusCode::kInvalidArgument);
}

TEST_CASE("model: seeded initialization is thread-count independent and well scaled") {
  vp::ModelConfig c;
  REQUIRE(vp::model_preset("tiny", &c).ok());
  vp::ParamLayout l;
  REQUIRE(vp::param_layout(c, &l).ok());
  const int saved = vp::num_threads();
  fvec a = vptest::poisoned(l.total), b = vptest::poisoned(l.total), other(l.total);
  vp::set_num_threads(1);
  REQUIRE(vp::init_params(l, 1234, a.data()).ok());
  vp::set_num_threads(2);
  REQUIRE(vp::init_params(l, 1234, b.data()).ok());
  vp::set_num_threads(saved);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  REQUIRE(vp::init_params(l, 1235, other.data()).ok());
  CHECK(std::memcmp(a.data(), other.data(), 256) != 0);
  auto stdev = [&](const char* n) {
    const auto* p = l.find(n);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < p->numel; ++i) {
      s += a[p->offset + i];
      s2 += static_cast<double>(a[p->offset + i]) * a[p->offset + i];
    }
    return std::sqrt(s2 / p->numel - (s / p->numel) * (s / p->numel));
  };
  CHECK(stdev("text.embed.weight") == doctest::Approx(0.02).epsilon(0.05));
  CHECK(stdev("layers.1.mlp.w_down") == doctest::Approx(0.02 / std::sqrt(8.0)).epsilon(0.1));
  const auto* g = l.find("final_norm.gain");
  for (int64_t i = 0; i < g->numel; ++i) REQUIRE(a[g->offset + i] == 1.0f);
  const auto* bias = l.find("vision.patch_embed.bias");
  for (int64_t i = 0; i < bias->numel; ++i) REQUIRE(a[bias->offset + i] == 0.0f);
  // distinct parameters get distinct streams
  CHECK(a[l.find("layers.0.attn.wq")->offset] != a[l.find("layers.1.attn.wq")->offset]);
}

TEST_CASE("blocks: the MLP sub-block's gradients match finite differences") {
  const int64_t n = 6, d = 12, f = 10;
  fvec x = vptest::random_floats(n * d, 1), g = vptest::random_floats(d, 2, 0.5f, 1.5f),
       wgu = vptest::random_floats(2 * f * d, 3, -0.5f, 0.5f), wd = vptest::random_floats(d * f, 4, -0.5f, 0.5f),
       dy = vptest::random_floats(n * d, 5);
  fvec rstd(n), xn(n * d), gu(n * 2 * f), act(n * f), y = vptest::poisoned(n * d);
  vp::MlpCache cache{rstd.data(), xn.data(), gu.data(), act.data()};
  REQUIRE(vp::mlp_block_forward(x.data(), n, d, f, g.data(), wgu.data(), wd.data(), 1e-5f, cache, y.data()).ok());
  CHECK(vptest::rel_error(y, mlp_ref(D(x), D(g), D(wgu), D(wd), n, d, f)) < 1e-5);
  fvec dx = vptest::poisoned(n * d), dg = vptest::poisoned(d), dwgu = vptest::poisoned(2 * f * d), dwd = vptest::poisoned(d * f);
  REQUIRE(vp::mlp_block_backward(dy.data(), x.data(), n, d, f, g.data(), wgu.data(), wd.data(), 1e-5f, cache, dx.data(),
                                 dg.data(), dwgu.data(), dwd.data(), false).ok());
  CHECK(vptest::rel_error(dx, fd([&](const dvec& v) { return mlp_ref(v, D(g), D(wgu), D(wd), n, d, f); }, D(x), D(dy))) < 1e-4);
  CHECK(vptest::rel_error(dg, fd([&](const dvec& v) { return mlp_ref(D(x), v, D(wgu), D(wd), n, d, f); }, D(g), D(dy))) < 1e-4);
  CHECK(vptest::rel_error(dwgu, fd([&](const dvec& v) { return mlp_ref(D(x), D(g), v, D(wd), n, d, f); }, D(wgu), D(dy))) < 1e-4);
  CHECK(vptest::rel_error(dwd, fd([&](const dvec& v) { return mlp_ref(D(x), D(g), D(wgu), v, n, d, f); }, D(wd), D(dy))) < 1e-4);
  // in place (dx == dy) gives the same
  fvec dyy = dy, dg2(d), dwgu2(2 * f * d), dwd2(d * f);
  REQUIRE(vp::mlp_block_backward(dyy.data(), x.data(), n, d, f, g.data(), wgu.data(), wd.data(), 1e-5f, cache, dyy.data(),
                                 dg2.data(), dwgu2.data(), dwd2.data(), false).ok());
  CHECK(vptest::rel_error(dyy, dx) < 1e-7);
}

TEST_CASE("blocks: LM head loss on target rows, chunked, with gradients") {
  const int64_t n = 9, d = 8, v = 23;
  fvec h = vptest::random_floats(n * d, 11, -2, 2), g = vptest::random_floats(d, 12, 0.5f, 1.5f),
       w = vptest::random_floats(v * d, 13);
  std::vector<int32_t> t{3, -1, 0, 22, -1, 7, 7, 1, -1};
  auto ref = [&](const dvec& hh, const dvec& gg, const dvec& ww) {
    double tot = 0;
    int cnt = 0;
    for (int64_t r = 0; r < n; ++r) {
      if (t[r] < 0) continue;
      dvec row(hh.begin() + r * d, hh.begin() + (r + 1) * d);
      dvec logits = lin(rms(row, gg, 1, d, 1e-5), ww, 1, d, v);
      double m = -1e300, s = 0;
      for (double l : logits) m = std::max(m, l);
      for (double l : logits) s += std::exp(l - m);
      tot += m + std::log(s) - logits[t[r]];
      ++cnt;
    }
    return dvec{tot / cnt};
  };
  for (int64_t chunk : {0, 1, 4}) {
    CAPTURE(chunk);
    float loss = 0;
    int64_t count = 0;
    fvec dh = vptest::poisoned(n * d), dg = vptest::poisoned(d), dw = vptest::poisoned(v * d);
    REQUIRE(vp::lm_head_loss_with_grad(h.data(), n, d, t.data(), g.data(), w.data(), v, 1e-5f, 2.0f, chunk, &loss,
                                       &count, dh.data(), dg.data(), dw.data(), false).ok());
    CHECK(count == 6);
    CHECK(loss == doctest::Approx(ref(D(h), D(g), D(w))[0]).epsilon(1e-5));
    CHECK(vptest::rel_error(dh, fd([&](const dvec& x) { return ref(x, D(g), D(w)); }, D(h), dvec{2.0})) < 1e-4);
    CHECK(vptest::rel_error(dg, fd([&](const dvec& x) { return ref(D(h), x, D(w)); }, D(g), dvec{2.0})) < 1e-4);
    CHECK(vptest::rel_error(dw, fd([&](const dvec& x) { return ref(D(h), D(g), x); }, D(w), dvec{2.0})) < 1e-4);
    for (int64_t j = 0; j < d; ++j) CHECK(dh[1 * d + j] == 0.0f);
  }
  std::vector<int32_t> bad(n, 0);
  bad[4] = v;
  float loss = 0;
  CHECK(vp::lm_head_loss_with_grad(h.data(), n, d, bad.data(), g.data(), w.data(), v, 1e-5f, 1.0f, 0, &loss, nullptr,
                                   nullptr, nullptr, nullptr, false).code() == vp::StatusCode::kOutOfRange);
}

TEST_CASE("blocks: vision embedding (patches + frame and patch positions) and its gradients") {
  const int64_t videos = 2, nf = 3, image = 8, patch = 4, d = 5, P = 4, feat = patch * patch * 3, np = videos * nf * P;
  std::vector<uint8_t> frames(videos * nf * image * image * 3);
  for (size_t i = 0; i < frames.size(); ++i) frames[i] = static_cast<uint8_t>((i * 53 + 7) % 256);
  fvec w = vptest::random_floats(d * feat, 21), b = vptest::random_floats(d, 22), fp = vptest::random_floats(nf * d, 23),
       pp = vptest::random_floats(P * d, 24), patches(np * feat), tokens = vptest::poisoned(np * d);
  REQUIRE(vp::vision_embed_forward(frames.data(), videos, nf, image, patch, w.data(), b.data(), fp.data(), pp.data(), d,
                                   patches.data(), tokens.data()).ok());
  auto ref = [&](const dvec& ww, const dvec& bb, const dvec& ff, const dvec& pq) {
    dvec out = lin(D(patches), ww, np, feat, d);
    for (int64_t i = 0; i < np; ++i)
      for (int64_t j = 0; j < d; ++j) out[i * d + j] += bb[j] + ff[((i / P) % nf) * d + j] + pq[(i % P) * d + j];
    return out;
  };
  CHECK(vptest::rel_error(tokens, ref(D(w), D(b), D(fp), D(pp))) < 1e-5);
  fvec dt = vptest::random_floats(np * d, 25), dw = vptest::poisoned(d * feat), db = vptest::poisoned(d),
       dfp = vptest::poisoned(nf * d), dpp = vptest::poisoned(P * d);
  REQUIRE(vp::vision_embed_backward(dt.data(), patches.data(), videos, nf, image, patch, d, dw.data(), db.data(),
                                    dfp.data(), dpp.data(), false).ok());
  CHECK(vptest::rel_error(dw, fd([&](const dvec& x) { return ref(x, D(b), D(fp), D(pp)); }, D(w), D(dt))) < 1e-5);
  CHECK(vptest::rel_error(db, fd([&](const dvec& x) { return ref(D(w), x, D(fp), D(pp)); }, D(b), D(dt))) < 1e-5);
  CHECK(vptest::rel_error(dfp, fd([&](const dvec& x) { return ref(D(w), D(b), x, D(pp)); }, D(fp), D(dt))) < 1e-5);
  CHECK(vptest::rel_error(dpp, fd([&](const dvec& x) { return ref(D(w), D(b), D(fp), x); }, D(pp), D(dt))) < 1e-5);
}
