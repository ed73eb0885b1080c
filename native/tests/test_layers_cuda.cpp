// The CUDA layer kernels against the CPU kernels (themselves tested against
// float64 references and finite differences). Skipped without a usable GPU.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "cuda_dev.h"
#include "test_util.h"
#include "vp/cuda.h"
#include "vp/layers.h"
#include "vp/optim.h"

namespace {

using vptest::Dev;

bool skip() { return vptest::skip_without_cuda(); }

}  // namespace

TEST_CASE("cuda layers: rmsnorm, swiglu, rope match the CPU kernels") {
  if (skip()) {
    float x = 0;
    CHECK(vp::cuda::rmsnorm_forward(&x, &x, 1, 1, 1e-5f, &x, nullptr).code() == vp::StatusCode::kUnavailable);
    return;
  }
  const int64_t rows = 37, d = 300, f = 129, t = 21, h = 3, hd = 64;
  auto x = vptest::random_floats(rows * d, 1), g = vptest::random_floats(d, 2), dy = vptest::random_floats(rows * d, 3);
  std::vector<float> y(rows * d), rs(rows), dx(rows * d), dg(d);
  REQUIRE(vp::rmsnorm_forward(x.data(), g.data(), rows, d, 1e-5f, y.data(), rs.data()).ok());
  REQUIRE(vp::rmsnorm_backward(dy.data(), x.data(), g.data(), rs.data(), rows, d, 1e-5f, dx.data(), dg.data(), false).ok());
  Dev<float> dx_(x), dg_(g), ddy(dy), dy_out(vptest::poisoned(rows * d)), drs(vptest::poisoned(rows)),
      ddx(vptest::poisoned(rows * d)), ddg(vptest::poisoned(d));
  REQUIRE(vp::cuda::rmsnorm_forward(dx_.p, dg_.p, rows, d, 1e-5f, dy_out.p, drs.p).ok());
  REQUIRE(vp::cuda::rmsnorm_backward(ddy.p, dx_.p, dg_.p, drs.p, rows, d, 1e-5f, ddx.p, ddg.p, false).ok());
  CHECK(vptest::rel_error(dy_out.get(), y) < 1e-5);
  CHECK(vptest::rel_error(ddx.get(), dx) < 1e-5);
  CHECK(vptest::rel_error(ddg.get(), dg) < 1e-5);

  auto gu = vptest::random_floats(rows * 2 * f, 4, -4, 4), dh = vptest::random_floats(rows * f, 5);
  std::vector<float> hh(rows * f), dgu(rows * 2 * f);
  REQUIRE(vp::swiglu_forward(gu.data(), gu.data() + f, rows, f, 2 * f, hh.data()).ok());
  REQUIRE(vp::swiglu_backward(dh.data(), gu.data(), gu.data() + f, rows, f, 2 * f, dgu.data(), dgu.data() + f).ok());
  Dev<float> dgu_(gu), ddh(dh), dhh(vptest::poisoned(rows * f)), ddgu(vptest::poisoned(rows * 2 * f));
  REQUIRE(vp::cuda::swiglu_forward(dgu_.p, dgu_.p + f, rows, f, 2 * f, dhh.p).ok());
  REQUIRE(vp::cuda::swiglu_backward(ddh.p, dgu_.p, dgu_.p + f, rows, f, 2 * f, ddgu.p, ddgu.p + f).ok());
  CHECK(vptest::rel_error(dhh.get(), hh) < 1e-5);
  CHECK(vptest::rel_error(ddgu.get(), dgu) < 1e-5);

  auto q = vptest::random_floats(t * h * hd, 6);
  std::vector<int32_t> pos(t);
  for (int64_t i = 0; i < t; ++i) pos[i] = static_cast<int32_t>((i * 37) % 1000);
  std::vector<float> qr(t * h * hd);
  REQUIRE(vp::rope_apply(q.data(), pos.data(), t, h, hd, 10000.0f, false, qr.data()).ok());
  Dev<float> dq(q), dqr(vptest::poisoned(t * h * hd));
  Dev<int32_t> dpos(pos);
  REQUIRE(vp::cuda::rope_apply(dq.p, dpos.p, t, h, hd, 10000.0f, false, dqr.p).ok());
  CHECK(vptest::rel_error(dqr.get(), qr) < 1e-6);
  pos[5] = -3;
  Dev<int32_t> dbad(pos);
  CHECK(vp::cuda::rope_apply(dq.p, dbad.p, t, h, hd, 10000.0f, false, dqr.p).code() == vp::StatusCode::kOutOfRange);
}

TEST_CASE("cuda layers: embedding, cross-entropy and adamw match the CPU kernels") {
  if (skip()) return;
  const int64_t v = 50, d = 33, n = 300;
  auto table = vptest::random_floats(v * d, 7), dout = vptest::random_floats(n * d, 8);
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 13) % (v - 3));
  std::vector<float> out(n * d), dt(v * d);
  REQUIRE(vp::embedding_forward(table.data(), v, d, ids.data(), n, out.data()).ok());
  REQUIRE(vp::embedding_backward(dout.data(), ids.data(), n, v, d, dt.data(), false).ok());
  Dev<float> dtab(table), dd(dout), dout_(vptest::poisoned(n * d)), ddt(vptest::poisoned(v * d));
  Dev<int32_t> dids(ids);
  REQUIRE(vp::cuda::embedding_forward(dtab.p, v, d, dids.p, n, dout_.p).ok());
  REQUIRE(vp::cuda::embedding_backward(dd.p, dids.p, n, v, d, ddt.p, false).ok());
  CHECK(vptest::rel_error(dout_.get(), out) == 0.0);
  CHECK(vptest::rel_error(ddt.get(), dt) < 1e-6);

  const int64_t rows = 19, vocab = 1000;
  auto logits = vptest::random_floats(rows * vocab, 9, -5, 5);
  std::vector<int32_t> tg(rows);
  for (int64_t i = 0; i < rows; ++i) tg[i] = i % 4 == 3 ? -1 : static_cast<int32_t>((i * 97) % vocab);
  float loss = 0, dloss = 0;
  int64_t cnt = 0, dcnt = 0;
  std::vector<float> lse(rows), dl(rows * vocab);
  REQUIRE(vp::cross_entropy_forward(logits.data(), tg.data(), rows, vocab, &loss, lse.data(), &cnt).ok());
  REQUIRE(vp::cross_entropy_backward(logits.data(), tg.data(), lse.data(), rows, vocab, 1.0f, dl.data()).ok());
  Dev<float> dlog(logits), dlse(vptest::poisoned(rows)), ddl(vptest::poisoned(rows * vocab));
  Dev<int32_t> dtg(tg);
  REQUIRE(vp::cuda::cross_entropy_forward(dlog.p, dtg.p, rows, vocab, &dloss, dlse.p, &dcnt).ok());
  REQUIRE(vp::cuda::cross_entropy_backward(dlog.p, dtg.p, dlse.p, rows, vocab, 1.0f, ddl.p).ok());
  CHECK(dcnt == cnt);
  CHECK(dloss == doctest::Approx(loss).epsilon(1e-5));
  CHECK(vptest::rel_error(dlse.get(), lse) < 1e-6);
  CHECK(vptest::rel_error(ddl.get(), dl) < 1e-5);

  const int64_t np = 10001;
  auto p = vptest::random_floats(np, 10), gr = vptest::random_floats(np, 11);
  std::vector<float> m(np, 0.f), vv(np, 0.f);
  Dev<float> dp(p), dgr(gr), dm(m), dv(vv);
  vp::AdamWConfig c;
  c.lr = 1e-2f;
  c.weight_decay = 0.1f;
  for (int s = 1; s <= 3; ++s) {
    c.step = s;
    REQUIRE(vp::adamw_step(p.data(), gr.data(), m.data(), vv.data(), np, c).ok());
    REQUIRE(vp::cuda::adamw_step(dp.p, dgr.p, dm.p, dv.p, np, c).ok());
  }
  CHECK(vptest::rel_error(dp.get(), p) < 1e-6);
  CHECK(vptest::rel_error(dv.get(), vv) < 1e-5);
}
