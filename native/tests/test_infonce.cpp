// InfoNCE against a float64 reference: random N, M (1 to 3000, N != M), D (8 to
// 512), normalize on and off, temperatures 0.01 to 1, duplicate positives, every
// ISA path and 1/2 threads; finite differences; bad inputs; the memory bound at
// N = M = 16384; and the CUDA kernels (f32, bf16, f16) where a GPU is usable.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/cuda.h"
#include "vp/infonce.h"
#include "vp/thread_pool.h"

namespace {

struct Ref {
  double loss = 0, dlt = 0;
  std::vector<double> lse, dq, dk;
};

// Straight from the definitions, in double.
Ref reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<int32_t>& pos,
              int64_t n, int64_t m, int64_t d, double tau, bool normalize, double g) {
  std::vector<double> qh(n * d), kh(m * d), rq(n, 1.0), rk(m, 1.0);
  auto norm_rows = [&](const std::vector<float>& x, std::vector<double>& xh, std::vector<double>& r, int64_t rows) {
    for (int64_t i = 0; i < rows; ++i) {
      double ss = 0;
      for (int64_t c = 0; c < d; ++c) ss += double(x[i * d + c]) * x[i * d + c];
      if (normalize) r[i] = 1.0 / std::sqrt(ss);
      for (int64_t c = 0; c < d; ++c) xh[i * d + c] = x[i * d + c] * r[i];
    }
  };
  norm_rows(q, qh, rq, n);
  norm_rows(k, kh, rk, m);
  Ref out;
  out.lse.resize(n);
  std::vector<double> dqh(n * d, 0.0), dkh(m * d, 0.0), s(m);
  for (int64_t i = 0; i < n; ++i) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < m; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < d; ++c) acc += qh[i * d + c] * kh[j * d + c];
      s[j] = acc / tau;
      mx = std::max(mx, s[j]);
    }
    // With P_pos − 1 = −Σ_{j≠pos} P_j and log1p, so the reference keeps its
    // precision when the positive dominates (the loss is then tiny).
    double sum = 0, others = 0;
    for (int64_t j = 0; j < m; ++j) {
      sum += std::exp(s[j] - mx);
      if (j != pos[i]) others += std::exp(s[j] - mx);
    }
    const double log_z = s[pos[i]] == mx ? std::log1p(others) : std::log(sum);
    out.lse[i] = mx + log_z;
    out.loss += ((mx - s[pos[i]]) + log_z) / double(n);
    for (int64_t j = 0; j < m; ++j) {
      const double p = std::exp(s[j] - mx) / sum;
      const double ds = g / double(n) * (j == pos[i] ? -others / sum : p);
      if (j != pos[i]) out.dlt -= g / double(n) * p * (s[j] - s[pos[i]]);
      for (int64_t c = 0; c < d; ++c) {
        dqh[i * d + c] += ds * kh[j * d + c] / tau;
        dkh[j * d + c] += ds * qh[i * d + c] / tau;
      }
    }
  }
  auto back = [&](const std::vector<double>& xh, const std::vector<double>& r, const std::vector<double>& dxh,
                  int64_t rows) {
    std::vector<double> dx(rows * d);
    for (int64_t i = 0; i < rows; ++i) {
      double dot = 0;
      for (int64_t c = 0; c < d; ++c) dot += xh[i * d + c] * dxh[i * d + c];
      for (int64_t c = 0; c < d; ++c)
        dx[i * d + c] = normalize ? r[i] * (dxh[i * d + c] - xh[i * d + c] * dot) : dxh[i * d + c];
    }
    return dx;
  };
  out.dq = back(qh, rq, dqh, n);
  out.dk = back(kh, rk, dkh, m);
  return out;
}

struct Case {
  int64_t n, m, d;
  float tau;
  bool normalize;
  float g;
  std::vector<float> q, k;
  std::vector<int32_t> pos;
};

// Positives drawn from a few keys, so many queries share one (duplicates).
Case make_case(int64_t n, int64_t m, int64_t d, float tau, bool normalize, uint64_t seed, float g = 1.0f) {
  Case c{n, m, d, tau, normalize, g, vptest::random_floats(n * d, seed), vptest::random_floats(m * d, seed + 1), {}};
  std::mt19937_64 rng(seed + 2);
  const int64_t distinct = std::max<int64_t>(1, std::min<int64_t>(m, n / 3 + 1));
  c.pos.resize(n);
  for (auto& p : c.pos) p = static_cast<int32_t>(rng() % distinct * (m / distinct));
  return c;
}

struct Out {
  double loss = NAN, dlt = NAN, dlt_sep = NAN, loss_sep = NAN;
  std::vector<float> lse, dq, dk, lse_sep, dq_sep, dk_sep;
};

vp::InfoNceOptions options(const Case& c) {
  vp::InfoNceOptions o;
  o.temperature = c.tau;
  o.normalize = c.normalize;
  o.grad_loss = c.g;
  return o;
}

// Runs the fused call and the two separate calls on the CPU, outputs poisoned first.
Out run_cpu(Case& c) {
  Out o;
  o.lse = vptest::poisoned(c.n), o.dq = vptest::poisoned(c.n * c.d), o.dk = vptest::poisoned(c.m * c.d);
  o.lse_sep = vptest::poisoned(c.n), o.dq_sep = vptest::poisoned(c.n * c.d), o.dk_sep = vptest::poisoned(c.m * c.d);
  vp::TensorView q(c.q.data(), {c.n, c.d}), k(c.k.data(), {c.m, c.d});
  vp::TensorView pos(c.pos.data(), {c.n}, vp::DType::kInt32);
  const auto opts = options(c);
  vp::Status s = vp::info_nce_with_grad(q, k, pos, opts, vp::TensorView(o.lse.data(), {c.n}),
                                        vp::TensorView(o.dq.data(), {c.n, c.d}),
                                        vp::TensorView(o.dk.data(), {c.m, c.d}), &o.loss, &o.dlt);
  REQUIRE_MESSAGE(s.ok(), s.message());
  s = vp::info_nce(q, k, pos, opts, vp::TensorView(o.lse_sep.data(), {c.n}), &o.loss_sep);
  REQUIRE_MESSAGE(s.ok(), s.message());
  s = vp::info_nce_backward(q, k, vp::TensorView(o.lse_sep.data(), {c.n}), pos, opts,
                            vp::TensorView(o.dq_sep.data(), {c.n, c.d}), vp::TensorView(o.dk_sep.data(), {c.m, c.d}),
                            &o.dlt_sep);
  REQUIRE_MESSAGE(s.ok(), s.message());
  return o;
}

double rel(double out, double ref) { return std::abs(out - ref) / std::max(std::abs(ref), 1e-30); }

void check_against(const Out& o, const Ref& r, double tol) {
  CHECK(rel(o.loss, r.loss) <= tol);
  CHECK(rel(o.loss_sep, r.loss) <= tol);
  CHECK(vptest::rel_error(o.lse, r.lse) <= tol);
  CHECK(vptest::rel_error(o.lse_sep, r.lse) <= tol);
  CHECK(vptest::rel_error(o.dq, r.dq) <= tol);
  CHECK(vptest::rel_error(o.dk, r.dk) <= tol);
  CHECK(vptest::rel_error(o.dq_sep, r.dq) <= tol);
  CHECK(vptest::rel_error(o.dk_sep, r.dk) <= tol);
  CHECK(std::abs(o.dlt - r.dlt) <= tol * std::abs(r.dlt) + 1e-12);
  CHECK(std::abs(o.dlt_sep - r.dlt) <= tol * std::abs(r.dlt) + 1e-12);
}


}  // namespace

TEST_CASE("infonce: CPU matches a float64 reference on random shapes (1e-5)") {
  vptest::BackendScope scope;
  vptest::ThreadScope threads;
  vp::set_num_threads(2);
  std::mt19937_64 rng(2024);
  const float taus[] = {0.01f, 0.07f, 0.3f, 1.0f};
  const int64_t fixed[][3] = {{1, 2, 8}, {5, 1, 8}, {3000, 17, 8}, {9, 3000, 16}, {700, 1300, 160}};
  int cases = 0;
  for (int t = 0; t < 16; ++t) {
    int64_t n, m, d;
    if (t < 5) {
      n = fixed[t][0], m = fixed[t][1], d = fixed[t][2];
    } else {
      // Random sizes with the reference's cost (N·M·D) kept to 150 million.
      d = 8 + static_cast<int64_t>(rng() % 505);
      do {
        n = 1 + static_cast<int64_t>(rng() % 3000);
        m = 1 + static_cast<int64_t>(rng() % 3000);
      } while (n == m || n * m * d > 150'000'000);
    }
    const float tau = taus[t % 4];
    const bool normalize = (t % 3) != 2;
    const float g = t % 5 == 4 ? -0.5f : 1.0f;
    Case c = make_case(n, m, d, tau, normalize, 1000 + t, g);
    CAPTURE(n);
    CAPTURE(m);
    CAPTURE(d);
    CAPTURE(tau);
    CAPTURE(normalize);
    const Ref r = reference(c.q, c.k, c.pos, n, m, d, tau, normalize, g);
    check_against(run_cpu(c), r, 1e-5);
    ++cases;
  }
  CHECK(cases == 16);
}

TEST_CASE("infonce: every ISA path and thread count agrees with the reference") {
  vptest::BackendScope scope;
  vptest::ThreadScope threads;
  Case c = make_case(333, 517, 77, 0.05f, true, 77);
  const Ref r = reference(c.q, c.k, c.pos, c.n, c.m, c.d, c.tau, c.normalize, c.g);
  Case c2 = make_case(129, 45, 300, 0.5f, false, 78);
  const Ref r2 = reference(c2.q, c2.k, c2.pos, c2.n, c2.m, c2.d, c2.tau, c2.normalize, c2.g);
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    for (int nt : {1, 2}) {
      vp::set_num_threads(nt);
      CAPTURE(vp::isa_name(isa));
      CAPTURE(nt);
      check_against(run_cpu(c), r, 1e-5);
      check_against(run_cpu(c2), r2, 1e-5);
    }
  }
}

TEST_CASE("infonce: results do not depend on the thread count") {
  vptest::BackendScope scope;
  vptest::ThreadScope threads;
  Case c = make_case(600, 900, 64, 0.1f, true, 5);
  vp::set_num_threads(1);
  Out a = run_cpu(c);
  vp::set_num_threads(2);
  Out b = run_cpu(c);
  CHECK(a.loss == b.loss);
  CHECK(a.dlt == b.dlt);
  CHECK(a.dq == b.dq);
  CHECK(a.dk == b.dk);
}

TEST_CASE("infonce: gradients agree with finite differences") {
  // Central differences of the float32 loss, in double where the step is taken;
  // and of the float64 reference loss (which checks the reference's own gradients,
  // including ∂/∂log τ, tightly).
  for (bool normalize : {true, false}) {
    CAPTURE(normalize);
    Case c = make_case(7, 11, 9, 0.2f, normalize, normalize ? 31 : 32);
    Out o = run_cpu(c);
    const Ref r = reference(c.q, c.k, c.pos, c.n, c.m, c.d, c.tau, normalize, 1.0);
    auto ref_loss = [&](const std::vector<float>& q, const std::vector<float>& k, double tau) {
      return reference(q, k, c.pos, c.n, c.m, c.d, tau, normalize, 1.0).loss;
    };
    auto our_loss = [&](std::vector<float>& q, std::vector<float>& k) {
      std::vector<float> lse(c.n);
      double loss = 0;
      vp::Status s = vp::info_nce(vp::TensorView(q.data(), {c.n, c.d}), vp::TensorView(k.data(), {c.m, c.d}),
                                  vp::TensorView(c.pos.data(), {c.n}, vp::DType::kInt32), options(c),
                                  vp::TensorView(lse.data(), {c.n}), &loss);
      REQUIRE(s.ok());
      return loss;
    };
    for (int which = 0; which < 2; ++which) {
      std::vector<float>& x = which == 0 ? c.q : c.k;
      const std::vector<float>& analytic = which == 0 ? o.dq : o.dk;
      for (size_t idx = 0; idx < x.size(); idx += 5) {
        const float x0 = x[idx];
        const float h = 1e-2f;
        x[idx] = x0 + h;
        const double lp = our_loss(c.q, c.k), rp = ref_loss(c.q, c.k, c.tau);
        x[idx] = x0 - h;
        const double lm = our_loss(c.q, c.k), rm = ref_loss(c.q, c.k, c.tau);
        x[idx] = x0;
        const double fd = (lp - lm) / (2.0 * h), fd_ref = (rp - rm) / (2.0 * h);
        CAPTURE(which);
        CAPTURE(idx);
        CHECK(std::abs(fd - analytic[idx]) <= 2e-3 + 2e-2 * std::abs(fd_ref));
        CHECK(std::abs(fd_ref - (which == 0 ? r.dq[idx] : r.dk[idx])) <= 1e-4 * (1.0 + std::abs(fd_ref)));
      }
    }
    // ∂loss/∂log τ: τ·e^{±h}.
    const double h = 1e-4;
    const double fd_ref = (ref_loss(c.q, c.k, c.tau * std::exp(h)) - ref_loss(c.q, c.k, c.tau * std::exp(-h))) / (2 * h);
    CHECK(std::abs(fd_ref - r.dlt) <= 1e-6 * (1.0 + std::abs(r.dlt)));
    CHECK(std::abs(o.dlt - fd_ref) <= 1e-4 * (1.0 + std::abs(fd_ref)));
  }
}

TEST_CASE("infonce: bad inputs give clear errors, not NaN") {
  Case c = make_case(4, 6, 5, 0.1f, true, 9);
  std::vector<float> lse(4), dq(20), dk(30);
  vp::TensorView q(c.q.data(), {4, 5}), k(c.k.data(), {6, 5}), vl(lse.data(), {4});
  vp::TensorView vdq(dq.data(), {4, 5}), vdk(dk.data(), {6, 5});
  auto fwd = [&](const std::vector<int32_t>& pos, vp::InfoNceOptions o, vp::TensorView qq, vp::TensorView kk) {
    std::vector<int32_t> p = pos;
    double loss;
    return vp::info_nce(qq, kk, vp::TensorView(p.data(), {static_cast<int64_t>(p.size())}, vp::DType::kInt32), o, vl, &loss);
  };
  vp::InfoNceOptions o;
  vp::Status s = fwd({0, 1, 6, 2}, o, q, k);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("positive[2]") != std::string::npos);
  s = fwd({0, -1, 1, 2}, o, q, k);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("positive[1]") != std::string::npos);
  s = fwd({0, 1, 2}, o, q, k);
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
  CHECK(s.message().find("positive") != std::string::npos);
  for (float tau : {0.0f, -1.0f, INFINITY, NAN}) {
    vp::InfoNceOptions bad = o;
    bad.temperature = tau;
    s = fwd({0, 1, 2, 3}, bad, q, k);
    CHECK(s.code() == vp::StatusCode::kOutOfRange);
    CHECK(s.message().find("temperature") != std::string::npos);
  }
  // Zero-norm rows with normalize: an error naming the row; without normalize fine.
  std::vector<float> qz = c.q;
  for (int cc = 0; cc < 5; ++cc) qz[2 * 5 + cc] = 0.0f;
  s = fwd({0, 1, 2, 3}, o, vp::TensorView(qz.data(), {4, 5}), k);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("queries row 2 has zero norm") != std::string::npos);
  std::vector<float> kz = c.k;
  for (int cc = 0; cc < 5; ++cc) kz[4 * 5 + cc] = 0.0f;
  s = vp::info_nce_with_grad(q, vp::TensorView(kz.data(), {6, 5}),
                             vp::TensorView(c.pos.data(), {4}, vp::DType::kInt32), o, vl, vdq, vdk, nullptr, nullptr);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("keys row 4 has zero norm") != std::string::npos);
  vp::InfoNceOptions raw = o;
  raw.normalize = false;
  CHECK(fwd({0, 1, 2, 3}, raw, vp::TensorView(qz.data(), {4, 5}), k).ok());
  std::vector<float> qn = c.q;
  qn[7] = NAN;
  s = fwd({0, 1, 2, 3}, raw, vp::TensorView(qn.data(), {4, 5}), k);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("queries row 1 holds a non-finite value") != std::string::npos);
  // Shapes and dtypes.
  s = fwd({0, 1, 2, 3}, o, q, vp::TensorView(c.k.data(), {5, 6}));
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
  CHECK(s.message().find("keys must have shape [5, 5]") != std::string::npos);
  s = fwd({0, 1, 2, 3}, o, vp::TensorView(c.q.data(), {4, 5}, vp::DType::kInt32), k);
  CHECK_FALSE(s.ok());
  s = vp::info_nce_backward(q, k, vl, vp::TensorView(c.pos.data(), {4}, vp::DType::kInt32), o,
                            vp::TensorView(dq.data(), {5, 4}), vdk, nullptr);
  CHECK(s.message().find("dQueries must have shape [4, 5]") != std::string::npos);
  // The backward refuses a non-finite lse.
  std::vector<float> bad_lse = {1, 2, NAN, 3};
  s = vp::info_nce_backward(q, k, vp::TensorView(bad_lse.data(), {4}), vp::TensorView(c.pos.data(), {4}, vp::DType::kInt32),
                            o, vdq, vdk, nullptr);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("lse[2]") != std::string::npos);
}

namespace {
// Peak resident memory since the last reset, in bytes (Linux; -1 elsewhere).
long long read_status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::atoll(line.c_str() + std::strlen(key));
  return -1;
}
// Resets the peak to what is resident now. glibc is first told to map every
// block of 128 KB or more on its own and to unmap it when freed (no dynamic
// threshold), and to hand freed heap memory back: so the resident set follows
// what is allocated, and the peak is the peak of live memory.
bool reset_peak() {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  malloc_trim(0);
#endif
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  return static_cast<bool>(f.flush());
}
}  // namespace

#if defined(__SANITIZE_ADDRESS__)
#define VP_TEST_UNDER_ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VP_TEST_UNDER_ASAN 1
#endif
#endif

TEST_CASE("infonce: N = M = 16384, D = 256 forward+backward needs < 64 MB beyond inputs and outputs") {
#ifdef VP_TEST_UNDER_ASAN
  MESSAGE("skipped under AddressSanitizer (its allocator changes what is resident)");
  return;
#else
  const int64_t n = 16384, m = 16384, d = 256;
  auto q = vptest::random_floats(n * d, 1), k = vptest::random_floats(m * d, 2);
  std::vector<int32_t> pos(n);
  for (int64_t i = 0; i < n; ++i) pos[i] = static_cast<int32_t>((i * 7) % m);
  std::vector<float> lse(n, 0.0f), dq(n * d, 0.0f), dk(m * d, 0.0f);  // touched: resident now
  vp::TensorView vq(q.data(), {n, d}), vk(k.data(), {m, d}), vpos(pos.data(), {n}, vp::DType::kInt32);
  vp::InfoNceOptions o;
  {  // warm the thread pool and SGEMM's per-thread buffers
    double loss;
    std::vector<float> l1(8);
    std::vector<int32_t> p1(8, 0);
    REQUIRE(vp::info_nce(vp::TensorView(q.data(), {8, d}), vp::TensorView(k.data(), {8, d}),
                         vp::TensorView(p1.data(), {8}, vp::DType::kInt32), o, vp::TensorView(l1.data(), {8}), &loss).ok());
  }
  if (!reset_peak() || read_status_kb("VmHWM:") < 0) {
    MESSAGE("skipped: /proc/self/clear_refs is not writable here, so peak memory cannot be measured");
    return;
  }
  const long long base_kb = read_status_kb("VmRSS:");
  double loss = 0, dlt = 0;
  vp::Status s = vp::info_nce(vq, vk, vpos, o, vp::TensorView(lse.data(), {n}), &loss);
  REQUIRE(s.ok());
  s = vp::info_nce_backward(vq, vk, vp::TensorView(lse.data(), {n}), vpos, o, vp::TensorView(dq.data(), {n, d}),
                            vp::TensorView(dk.data(), {m, d}), &dlt);
  REQUIRE(s.ok());
  const long long sep_kb = read_status_kb("VmHWM:") - base_kb;
  REQUIRE(reset_peak());
  const long long base2_kb = read_status_kb("VmRSS:");
  double loss2 = 0, dlt2 = 0;
  s = vp::info_nce_with_grad(vq, vk, vpos, o, vp::TensorView(lse.data(), {n}), vp::TensorView(dq.data(), {n, d}),
                             vp::TensorView(dk.data(), {m, d}), &loss2, &dlt2);
  REQUIRE(s.ok());
  const long long fused_kb = read_status_kb("VmHWM:") - base2_kb;
  std::printf("infonce memory: N=M=16384 D=256: infoNce+infoNceBackward peak +%.1f MB, infoNceWithGrad peak +%.1f MB "
              "beyond inputs and outputs (the N x M matrix alone: 1024 MB)\n",
              sep_kb / 1024.0, fused_kb / 1024.0);
  CHECK(sep_kb < 64 * 1024);
  CHECK(fused_kb < 64 * 1024);
  CHECK(std::isfinite(loss));
  CHECK(std::abs(loss - loss2) <= 1e-6 * std::abs(loss));
  CHECK(std::abs(dlt - dlt2) <= 1e-4 * std::abs(dlt));
  CHECK(std::all_of(dq.begin(), dq.end(), [](float v) { return std::isfinite(v); }));
  CHECK(std::all_of(dk.begin(), dk.end(), [](float v) { return std::isfinite(v); }));
#endif
}

// ---- CUDA ----------------------------------------------------------------

namespace {

// A device copy of a host float32 array in the given dtype (converted on the device).
struct DeviceArray {
  void* ptr = nullptr;
  ~DeviceArray() { vp::cuda::free_device(ptr); }
};

vp::TensorView dev_view(void* p, std::initializer_list<int64_t> shape, vp::DType t) {
  vp::TensorView v(p, shape, t, vp::Device::kCUDA);
  return v;
}

// Uploads x as f32, converts to dtype on the device; returns the dtype copy and
// (through rounded) the values it holds, as float.
void upload(const std::vector<float>& x, int64_t rows, int64_t cols, vp::DType t, DeviceArray& out,
            std::vector<float>& rounded) {
  DeviceArray f32;
  REQUIRE(vp::cuda::malloc_device(&f32.ptr, x.size() * 4).ok());
  REQUIRE(vp::cuda::copy_to_device(f32.ptr, x.data(), x.size() * 4).ok());
  rounded = x;
  if (t == vp::DType::kFloat32) {
    std::swap(out.ptr, f32.ptr);
    return;
  }
  REQUIRE(vp::cuda::malloc_device(&out.ptr, x.size() * 2).ok());
  REQUIRE(vp::cuda::convert(dev_view(f32.ptr, {rows, cols}, vp::DType::kFloat32), dev_view(out.ptr, {rows, cols}, t)).ok());
  REQUIRE(vp::cuda::convert(dev_view(out.ptr, {rows, cols}, t), dev_view(f32.ptr, {rows, cols}, vp::DType::kFloat32)).ok());
  REQUIRE(vp::cuda::copy_to_host(rounded.data(), f32.ptr, x.size() * 4).ok());
}

std::vector<float> download(void* p, int64_t rows, int64_t cols, vp::DType t) {
  std::vector<float> out(rows * cols);
  DeviceArray f32;
  if (t == vp::DType::kFloat32) {
    REQUIRE(vp::cuda::copy_to_host(out.data(), p, out.size() * 4).ok());
    return out;
  }
  REQUIRE(vp::cuda::malloc_device(&f32.ptr, out.size() * 4).ok());
  REQUIRE(vp::cuda::convert(dev_view(p, {rows, cols}, t), dev_view(f32.ptr, {rows, cols}, vp::DType::kFloat32)).ok());
  REQUIRE(vp::cuda::copy_to_host(out.data(), f32.ptr, out.size() * 4).ok());
  return out;
}

}  // namespace

TEST_CASE("infonce: CUDA f32/bf16/f16 match the float64 reference") {
  if (vptest::skip_without_cuda()) return;
  const int64_t shapes[][3] = {{1, 1, 8}, {37, 100, 64}, {300, 257, 128}, {1000, 1500, 256}, {129, 64, 512}, {70, 90, 1000}};
  int t = 0;
  for (const auto& sh : shapes) {
    for (vp::DType dt : {vp::DType::kFloat32, vp::DType::kBFloat16, vp::DType::kFloat16}) {
      const int64_t n = sh[0], m = sh[1], d = sh[2];
      const float tau = (t % 3 == 0) ? 0.02f : (t % 3 == 1 ? 0.07f : 0.5f);
      const bool normalize = t % 4 != 3;
      Case c = make_case(n, m, d, tau, normalize, 500 + t, 1.0f);
      ++t;
      CAPTURE(n);
      CAPTURE(m);
      CAPTURE(d);
      CAPTURE(vp::dtype_name(dt));
      CAPTURE(normalize);
      DeviceArray dq_in, dk_in, lse, dq, dk;
      std::vector<float> qr, kr;
      upload(c.q, n, d, dt, dq_in, qr);
      upload(c.k, m, d, dt, dk_in, kr);
      const Ref r = reference(qr, kr, c.pos, n, m, d, tau, normalize, 1.0);
      const size_t es = dt == vp::DType::kFloat32 ? 4 : 2;
      REQUIRE(vp::cuda::malloc_device(&lse.ptr, n * 4).ok());
      REQUIRE(vp::cuda::malloc_device(&dq.ptr, n * d * es).ok());
      REQUIRE(vp::cuda::malloc_device(&dk.ptr, m * d * es).ok());
      auto vq = dev_view(dq_in.ptr, {n, d}, dt), vk = dev_view(dk_in.ptr, {m, d}, dt);
      auto vl = dev_view(lse.ptr, {n}, vp::DType::kFloat32);
      auto vdq = dev_view(dq.ptr, {n, d}, dt), vdk = dev_view(dk.ptr, {m, d}, dt);
      vp::TensorView vpos(c.pos.data(), {n}, vp::DType::kInt32);
      double loss = NAN, dlt = NAN, loss2 = NAN, dlt2 = NAN;
      vp::Status s = vp::info_nce_with_grad(vq, vk, vpos, options(c), vl, vdq, vdk, &loss, &dlt);
      REQUIRE_MESSAGE(s.ok(), s.message());
      const double tol = dt == vp::DType::kFloat32 ? 1e-4 : 1e-2;
      CHECK(rel(loss, r.loss) <= tol);
      CHECK(vptest::rel_error(download(lse.ptr, n, 1, vp::DType::kFloat32), r.lse) <= tol);
      CHECK(vptest::rel_error(download(dq.ptr, n, d, dt), r.dq) <= tol);
      CHECK(vptest::rel_error(download(dk.ptr, m, d, dt), r.dk) <= tol);
      CHECK(std::abs(dlt - r.dlt) <= tol * std::abs(r.dlt) + 1e-9);
      s = vp::info_nce(vq, vk, vpos, options(c), vl, &loss2);
      REQUIRE(s.ok());
      CHECK(rel(loss2, r.loss) <= tol);
      s = vp::info_nce_backward(vq, vk, vl, vpos, options(c), vdq, vdk, &dlt2);
      REQUIRE(s.ok());
      CHECK(vptest::rel_error(download(dq.ptr, n, d, dt), r.dq) <= tol);
      CHECK(vptest::rel_error(download(dk.ptr, m, d, dt), r.dk) <= tol);
      CHECK(std::abs(dlt2 - r.dlt) <= tol * std::abs(r.dlt) + 1e-9);
    }
  }
}

TEST_CASE("infonce: CUDA reports zero-norm rows") {
  if (vptest::skip_without_cuda()) return;
  Case c = make_case(40, 50, 32, 0.1f, true, 3);
  for (int cc = 0; cc < 32; ++cc) c.k[17 * 32 + cc] = 0.0f;
  DeviceArray q, k, lse;
  std::vector<float> qr, kr;
  upload(c.q, 40, 32, vp::DType::kBFloat16, q, qr);
  upload(c.k, 50, 32, vp::DType::kBFloat16, k, kr);
  REQUIRE(vp::cuda::malloc_device(&lse.ptr, 40 * 4).ok());
  double loss;
  vp::Status s = vp::info_nce(dev_view(q.ptr, {40, 32}, vp::DType::kBFloat16), dev_view(k.ptr, {50, 32}, vp::DType::kBFloat16),
                              vp::TensorView(c.pos.data(), {40}, vp::DType::kInt32), options(c),
                              dev_view(lse.ptr, {40}, vp::DType::kFloat32), &loss);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("keys row 17") != std::string::npos);
}
