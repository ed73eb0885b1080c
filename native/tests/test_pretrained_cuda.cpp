// The CUDA kernels the pretrained models add (cuda/norm_act.cu,
// cuda/gemm_f32_bf16.cu, cuda/pretrained.cu) against float64 references
// computed here: LayerNorm forward and backward, GELU (erf, tanh, quick)
// forward and backward, the float32 × bfloat16 product (both layouts, bias, odd
// shapes), and the row / embedding / RoPE / decode-attention building blocks,
// outputs poisoned with NaN first, on fresh random inputs. Every case is named
// "cuda ..." so bench/gpu.sh's -tc='*cuda*' runs it; without a usable GPU each
// checks that the entry points report Unavailable and stops (skip_without_cuda).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda_dev.h"
#include "test_util.h"
#include "vp/cuda.h"
#include "vp/gemm_bf16.h"
#include "vp/gemm_f32_bf16.h"
#include "vp/norm_act.h"
#include "vp/pretrained_kernels.h"

namespace {

using vptest::Dev;

bool skip() { return vptest::skip_without_cuda(); }

// float64 LayerNorm of one row set: y, mean, rstd; and its backward.
void ln_ref(const std::vector<float>& x, const std::vector<float>& g, const std::vector<float>& b, int64_t rows, int64_t d,
            double eps, std::vector<double>& y, std::vector<double>& mean, std::vector<double>& rstd) {
  y.assign(rows * d, 0), mean.assign(rows, 0), rstd.assign(rows, 0);
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += x[r * d + j];
    const double m = s / d;
    double v = 0;
    for (int64_t j = 0; j < d; ++j) v += (x[r * d + j] - m) * (x[r * d + j] - m);
    const double rs = 1.0 / std::sqrt(v / d + eps);
    mean[r] = m, rstd[r] = rs;
    for (int64_t j = 0; j < d; ++j) y[r * d + j] = (x[r * d + j] - m) * rs * g[j] + b[j];
  }
}

double gelu_ref(double x, int k) {
  if (k == 0) return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  if (k == 1) return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  return x / (1.0 + std::exp(-1.702 * x));
}

}  // namespace

TEST_CASE("cuda layernorm forward and backward match a float64 reference") {
  if (skip()) {
    float x = 0;
    CHECK(vp::cuda::layernorm_forward(&x, &x, nullptr, 1, 1, 1e-5f, &x, nullptr, nullptr).code() ==
          vp::StatusCode::kUnavailable);
    return;
  }
  for (auto [rows, d] : {std::pair<int64_t, int64_t>{37, 300}, {5, 1152}, {130, 64}}) {
    CAPTURE(rows);
    CAPTURE(d);
    const double eps = 1e-6;
    auto x = vptest::random_floats(rows * d, 11, -2, 3), g = vptest::random_floats(d, 12), b = vptest::random_floats(d, 13);
    auto dy = vptest::random_floats(rows * d, 14), g0 = vptest::random_floats(d, 15), b0 = vptest::random_floats(d, 16);
    std::vector<double> y, mean, rstd;
    ln_ref(x, g, b, rows, d, eps, y, mean, rstd);
    // backward reference: dx = rstd·(gd − mean(gd) − x̂·mean(gd·x̂)), gd = dy·gamma; dgamma = Σ dy·x̂; dbeta = Σ dy.
    std::vector<double> dx(rows * d), dg(g0.begin(), g0.end()), db(b0.begin(), b0.end());
    for (int64_t r = 0; r < rows; ++r) {
      double s1 = 0, s2 = 0;
      for (int64_t j = 0; j < d; ++j) {
        const double xh = (x[r * d + j] - mean[r]) * rstd[r], gd = static_cast<double>(dy[r * d + j]) * g[j];
        s1 += gd, s2 += gd * xh;
        dg[j] += dy[r * d + j] * xh, db[j] += dy[r * d + j];
      }
      for (int64_t j = 0; j < d; ++j) {
        const double xh = (x[r * d + j] - mean[r]) * rstd[r];
        dx[r * d + j] = rstd[r] * (static_cast<double>(dy[r * d + j]) * g[j] - s1 / d - xh * s2 / d);
      }
    }
    Dev<float> dx_(x), dg_(g), db_(b), ddy(dy), dy_out(vptest::poisoned(rows * d)), dm(vptest::poisoned(rows)),
        drs(vptest::poisoned(rows)), ddx(vptest::poisoned(rows * d)), ddg(g0), ddb(b0), ddx2(vptest::poisoned(rows * d));
    REQUIRE(vp::cuda::layernorm_forward(dx_.p, dg_.p, db_.p, rows, d, static_cast<float>(eps), dy_out.p, dm.p, drs.p).ok());
    CHECK(vptest::rel_error(dy_out.get(), y) < 1e-5);
    CHECK(vptest::rel_error(dm.get(), mean) < 1e-6);
    CHECK(vptest::rel_error(drs.get(), rstd) < 1e-6);
    // accumulate into the given gradients, statistics from the forward pass
    REQUIRE(vp::cuda::layernorm_backward(ddy.p, dx_.p, dg_.p, dm.p, drs.p, rows, d, static_cast<float>(eps), ddx.p, ddg.p,
                                         ddb.p, true).ok());
    CHECK(vptest::rel_error(ddx.get(), dx) < 1e-5);
    CHECK(vptest::rel_error(ddg.get(), dg) < 1e-5);
    CHECK(vptest::rel_error(ddb.get(), db) < 1e-5);
    // statistics recomputed, gradients overwritten (ddg / ddb poisoned first)
    Dev<float> ddg2(vptest::poisoned(d)), ddb2(vptest::poisoned(d));
    REQUIRE(vp::cuda::layernorm_backward(ddy.p, dx_.p, dg_.p, nullptr, nullptr, rows, d, static_cast<float>(eps), ddx2.p,
                                         ddg2.p, ddb2.p, false).ok());
    std::vector<double> dg_only(d, 0), db_only(d, 0);
    for (int64_t j = 0; j < d; ++j) dg_only[j] = dg[j] - g0[j], db_only[j] = db[j] - b0[j];
    CHECK(vptest::rel_error(ddx2.get(), dx) < 1e-5);
    CHECK(vptest::rel_error(ddg2.get(), dg_only) < 1e-5);
    CHECK(vptest::rel_error(ddb2.get(), db_only) < 1e-5);
  }
  // no beta, and the argument checks
  const int64_t rows = 9, d = 77;
  auto x = vptest::random_floats(rows * d, 21), g = vptest::random_floats(d, 22);
  std::vector<float> zero(d, 0.0f);
  std::vector<double> y, mean, rstd;
  ln_ref(x, g, zero, rows, d, 1e-5, y, mean, rstd);
  Dev<float> dx_(x), dg_(g), dy_out(vptest::poisoned(rows * d)), dm(vptest::poisoned(rows)), drs(vptest::poisoned(rows));
  REQUIRE(vp::cuda::layernorm_forward(dx_.p, dg_.p, nullptr, rows, d, 1e-5f, dy_out.p, dm.p, drs.p).ok());
  CHECK(vptest::rel_error(dy_out.get(), y) < 1e-5);
  CHECK(vp::cuda::layernorm_forward(dx_.p, dg_.p, nullptr, rows, 0, 1e-5f, dy_out.p, dm.p, drs.p).code() ==
        vp::StatusCode::kInvalidArgument);
  CHECK(vp::cuda::layernorm_backward(dx_.p, dx_.p, dg_.p, dm.p, nullptr, rows, d, 1e-5f, dy_out.p, nullptr, nullptr, false)
            .code() == vp::StatusCode::kInvalidArgument);
}

TEST_CASE("cuda gelu erf, tanh and quick forward and backward match a float64 reference") {
  if (skip()) {
    float x = 0;
    CHECK(vp::cuda::gelu_forward(&x, 1, vp::GeluKind::kErf, &x).code() == vp::StatusCode::kUnavailable);
    return;
  }
  const int64_t n = 100003;
  auto x = vptest::random_floats(n, 31, -6, 6), dy = vptest::random_floats(n, 32);
  for (int k = 0; k < 3; ++k) {
    CAPTURE(k);
    std::vector<double> y(n), dx(n);
    for (int64_t i = 0; i < n; ++i) {
      y[i] = gelu_ref(x[i], k);
      const double h = 1e-5 * std::max(1.0, std::fabs(static_cast<double>(x[i])));
      dx[i] = dy[i] * (gelu_ref(x[i] + h, k) - gelu_ref(x[i] - h, k)) / (2 * h);
    }
    Dev<float> dxv(x), ddy(dy), dyo(vptest::poisoned(n)), ddx(vptest::poisoned(n));
    REQUIRE(vp::cuda::gelu_forward(dxv.p, n, static_cast<vp::GeluKind>(k), dyo.p).ok());
    REQUIRE(vp::cuda::gelu_backward(ddy.p, dxv.p, n, static_cast<vp::GeluKind>(k), ddx.p).ok());
    CHECK(vptest::rel_error(dyo.get(), y) < 1e-5);
    CHECK(vptest::rel_error(ddx.get(), dx) < 1e-5);
    // in place: dx aliases dy
    REQUIRE(vp::cuda::gelu_backward(ddy.p, dxv.p, n, static_cast<vp::GeluKind>(k), ddy.p).ok());
    CHECK(vptest::rel_error(ddy.get(), dx) < 1e-5);
  }
  float z = 0;
  CHECK(vp::cuda::gelu_forward(&z, 1, static_cast<vp::GeluKind>(3), &z).code() == vp::StatusCode::kInvalidArgument);
}

TEST_CASE("cuda gemm_f32_bf16 matches a float64 reference of the bf16-rounded inputs") {
  if (skip()) {
    vp::GemmF32Bf16Args g;
    g.m = g.n = g.k = 1;
    float c = 0, a = 0;
    uint16_t b = 0;
    g.a = &a, g.b = &b, g.c = &c;
    CHECK(vp::cuda::gemm_f32_bf16(g).code() == vp::StatusCode::kUnavailable);
    return;
  }
  struct Shape { int64_t m, n, k; };
  for (Shape s : {Shape{1, 1, 1}, Shape{7, 33, 65}, Shape{64, 64, 32}, Shape{130, 97, 300}, Shape{3, 576, 1536}}) {
    for (bool tb : {true, false})
      for (bool bias : {true, false}) {
        CAPTURE(s.m);
        CAPTURE(s.n);
        CAPTURE(s.k);
        CAPTURE(tb);
        CAPTURE(bias);
        const uint64_t seed = 100 + s.m * 7 + s.n * 3 + s.k + (tb ? 1 : 0) + (bias ? 2 : 0);
        auto a = vptest::random_floats(s.m * s.k, seed), bf = vptest::random_floats(s.k * s.n, seed + 1),
             bv = vptest::random_floats(s.n, seed + 2);
        std::vector<uint16_t> b(s.k * s.n);
        for (int64_t i = 0; i < s.k * s.n; ++i) b[i] = vp::float_to_bf16(bf[i]);
        std::vector<double> ref(s.m * s.n);
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t j = 0; j < s.n; ++j) {
            double acc = bias ? bv[j] : 0.0;
            for (int64_t p = 0; p < s.k; ++p)
              acc += static_cast<double>(vp::bf16_to_float(vp::float_to_bf16(a[i * s.k + p]))) *
                     vp::bf16_to_float(tb ? b[j * s.k + p] : b[p * s.n + j]);
            ref[i * s.n + j] = acc;
          }
        Dev<float> da(a), dbias(bv), dc(vptest::poisoned(s.m * s.n));
        Dev<uint16_t> db(b);
        vp::GemmF32Bf16Args g;
        g.trans_b = tb, g.m = s.m, g.n = s.n, g.k = s.k, g.a = da.p, g.b = db.p, g.bias = bias ? dbias.p : nullptr, g.c = dc.p;
        REQUIRE(vp::cuda::gemm_f32_bf16(g).ok());
        CHECK(vptest::rel_error(dc.get(), ref) < 1e-5);
      }
  }
  // k == 0: C is the bias
  std::vector<float> bv = vptest::random_floats(5, 9);
  Dev<float> dbias(bv), dc(vptest::poisoned(15));
  vp::GemmF32Bf16Args g;
  g.m = 3, g.n = 5, g.k = 0, g.bias = dbias.p, g.c = dc.p, g.trans_b = true;
  REQUIRE(vp::cuda::gemm_f32_bf16(g).ok());
  std::vector<double> ref(15);
  for (int i = 0; i < 15; ++i) ref[i] = bv[i % 5];
  CHECK(vptest::rel_error(dc.get(), ref) == 0.0);
}

TEST_CASE("cuda pretrained building blocks: rows, embeddings, RoPE table, vector ops, decode attention") {
  if (skip()) {
    float x = 0;
    CHECK(vp::cuda::axpy(&x, &x, 1.0f, 1).code() == vp::StatusCode::kUnavailable);
    return;
  }
  const int64_t n = 11, d = 37, srcRows = 9;
  auto src = vptest::random_floats(srcRows * d, 41);
  std::vector<int32_t> rows = {3, 0, 8, 8, 1, 2, 7, 5, 4, 6, 3};
  {  // gather, then scatter-add back (rows repeat: their contributions add up)
    std::vector<double> g(n * d), s(srcRows * d, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) g[i * d + j] = src[rows[i] * d + j], s[rows[i] * d + j] += src[rows[i] * d + j];
    Dev<float> ds(src), dout(vptest::poisoned(n * d)), dst(std::vector<float>(srcRows * d, 0.0f));
    REQUIRE(vp::cuda::gather_rows(ds.p, srcRows, rows.data(), n, d, dout.p).ok());
    CHECK(vptest::rel_error(dout.get(), g) == 0.0);
    REQUIRE(vp::cuda::scatter_add_rows(dout.p, rows.data(), n, d, dst.p, srcRows).ok());
    CHECK(vptest::rel_error(dst.get(), s) < 1e-7);
    std::vector<int32_t> bad = rows;
    bad[4] = static_cast<int32_t>(srcRows);
    CHECK(vp::cuda::gather_rows(ds.p, srcRows, bad.data(), n, d, dout.p).code() == vp::StatusCode::kOutOfRange);
    bad[4] = -1;
    CHECK(vp::cuda::scatter_add_rows(dout.p, bad.data(), n, d, dst.p, srcRows).code() == vp::StatusCode::kOutOfRange);
  }
  {  // embedding lookups: float32 and bfloat16 tables
    std::vector<uint16_t> t16(srcRows * d);
    for (size_t i = 0; i < t16.size(); ++i) t16[i] = vp::float_to_bf16(src[i]);
    std::vector<double> e32(n * d), e16(n * d);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) e32[i * d + j] = src[rows[i] * d + j], e16[i * d + j] = vp::bf16_to_float(t16[rows[i] * d + j]);
    Dev<float> ds(src), o1(vptest::poisoned(n * d)), o2(vptest::poisoned(n * d));
    Dev<uint16_t> d16(t16);
    REQUIRE(vp::cuda::embedding_lookup(ds.p, false, srcRows, d, rows.data(), n, o1.p).ok());
    REQUIRE(vp::cuda::embedding_lookup(d16.p, true, srcRows, d, rows.data(), n, o2.p).ok());
    CHECK(vptest::rel_error(o1.get(), e32) == 0.0);
    CHECK(vptest::rel_error(o2.get(), e16) == 0.0);
    // embedding_grad: dtable[v] = Σ dout[i] with ids[i] == v (overwrite)
    auto dout = vptest::random_floats(n * d, 42);
    std::vector<double> dt(srcRows * d, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) dt[rows[i] * d + j] += dout[i * d + j];
    Dev<float> ddo(dout), ddt(vptest::poisoned(srcRows * d));
    REQUIRE(vp::cuda::embedding_grad(ddo.p, rows.data(), n, srcRows, d, ddt.p, false).ok());
    CHECK(vptest::rel_error(ddt.get(), dt) < 1e-7);
  }
  {  // RoPE from a table, forward and inverse (in place), against float64
    const int64_t T = 6, H = 3, D = 16, half = D / 2, P = 40;
    std::vector<float> ct(P * half), st(P * half);
    for (int64_t p = 0; p < P; ++p)
      for (int64_t i = 0; i < half; ++i) {
        const double a = p * std::pow(50000.0, -2.0 * i / D) * (i % 3 == 0 ? 0.25 : 1.0);
        ct[p * half + i] = static_cast<float>(std::cos(a)), st[p * half + i] = static_cast<float>(std::sin(a));
      }
    std::vector<int32_t> pos = {0, 5, 39, 2, 2, 17};
    auto x = vptest::random_floats(T * H * D, 43);
    std::vector<double> ref(T * H * D);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const int64_t o = (t * H + h) * D;
          const double c = ct[pos[t] * half + i], s = st[pos[t] * half + i];
          ref[o + i] = x[o + i] * c - x[o + half + i] * s;
          ref[o + half + i] = x[o + half + i] * c + x[o + i] * s;
        }
    Dev<float> dx(x), dout(vptest::poisoned(T * H * D));
    REQUIRE(vp::cuda::rope_table(dx.p, pos.data(), T, H, D, ct.data(), st.data(), P, false, dout.p).ok());
    CHECK(vptest::rel_error(dout.get(), ref) < 1e-6);
    REQUIRE(vp::cuda::rope_table(dout.p, pos.data(), T, H, D, ct.data(), st.data(), P, true, dout.p).ok());
    CHECK(vptest::rel_error(dout.get(), x) < 1e-5);
    pos[2] = static_cast<int32_t>(P);
    CHECK(vp::cuda::rope_table(dx.p, pos.data(), T, H, D, ct.data(), st.data(), P, false, dout.p).code() ==
          vp::StatusCode::kOutOfRange);
  }
  {  // axpy, scale, mul, bias rows
    const int64_t r = 13, c = 29;
    auto y = vptest::random_floats(r * c, 44), x = vptest::random_floats(r * c, 45), b = vptest::random_floats(c, 46);
    std::vector<double> ref(r * c);
    for (int64_t i = 0; i < r * c; ++i) ref[i] = ((static_cast<double>(y[i]) + 0.5 * x[i]) * -1.25 * x[i]) + b[i % c];
    Dev<float> dy(y), dx(x), db(b);
    REQUIRE(vp::cuda::axpy(dy.p, dx.p, 0.5f, r * c).ok());
    REQUIRE(vp::cuda::scale(dy.p, -1.25f, r * c).ok());
    REQUIRE(vp::cuda::mul_inplace(dy.p, dx.p, r * c).ok());
    REQUIRE(vp::cuda::add_bias_rows(dy.p, db.p, r, c).ok());
    CHECK(vptest::rel_error(dy.get(), ref) < 1e-6);
  }
  {  // decode attention over cache rows, and its bounds check
    const int64_t H = 4, Hkv = 2, D = 8, rowsCache = 20;
    std::vector<int32_t> base = {0, 7, 12}, nk = {5, 1, 8};
    const int64_t nq = 3;
    auto q = vptest::random_floats(nq * H * D, 47), kc = vptest::random_floats(rowsCache * Hkv * D, 48),
         vc = vptest::random_floats(rowsCache * Hkv * D, 49);
    const double sc = 1.0 / std::sqrt(static_cast<double>(D));
    std::vector<double> ref(nq * H * D, 0.0);
    for (int64_t i = 0; i < nq; ++i)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / Hkv);
        std::vector<double> s(nk[i]);
        double mx = -1e300, sum = 0;
        for (int64_t t = 0; t < nk[i]; ++t) {
          double a = 0;
          for (int64_t j = 0; j < D; ++j) a += static_cast<double>(q[(i * H + h) * D + j]) * kc[((base[i] + t) * Hkv + g) * D + j];
          s[t] = a * sc, mx = std::max(mx, s[t]);
        }
        for (auto& v : s) v = std::exp(v - mx), sum += v;
        for (int64_t t = 0; t < nk[i]; ++t)
          for (int64_t j = 0; j < D; ++j) ref[(i * H + h) * D + j] += s[t] / sum * vc[((base[i] + t) * Hkv + g) * D + j];
      }
    Dev<float> dq(q), dk(kc), dv(vc), dout(vptest::poisoned(nq * H * D));
    REQUIRE(vp::cuda::decode_attention_rows(dq.p, dk.p, dv.p, rowsCache, base.data(), nk.data(), nq, H, Hkv, D,
                                            static_cast<float>(sc), dout.p).ok());
    CHECK(vptest::rel_error(dout.get(), ref) < 1e-5);
    nk[2] = 9;  // rows [12, 21) leave the cache
    CHECK(vp::cuda::decode_attention_rows(dq.p, dk.p, dv.p, rowsCache, base.data(), nk.data(), nq, H, Hkv, D,
                                          static_cast<float>(sc), dout.p).code() == vp::StatusCode::kOutOfRange);
  }
}
