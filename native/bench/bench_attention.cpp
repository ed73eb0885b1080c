// vp_bench_attention: times the fused attention of the core without Node.
//
//   vp_bench_attention [--device cpu|cuda] [--dtype float32|bfloat16|float16]
//                      [--T 1024] [--H 8] [--Hkv H] [--D 64] [--causal 0|1]
//                      [--reps N] [--threads N] [--backward 0|1] [--json]
//                      [--io DIR]
//
// FLOPs as FlashAttention counts them: 4·T²·H·D forward, 2.5× that backward,
// half of each when causal. Prints one line per direction (and, on the CPU, our
// SGEMM's GFLOP/s at 1024³ for reference), or JSON lines with --json.
// --suite [--device cpu|cuda] [--dtype ...] [--quick]: the fixed list of cases
// bench/gpu.sh runs, one JSON line per case and direction in the format of
// bench_util.h (bench/peers/gpu_torch.py times scaled_dot_product_attention on
// the same shapes): dense D = 128 (and 64 with --full) with H = 2048 / D, T in
// {1024, 4096, 8192} (no 8192 with --quick), causal and not; a varlen batch of 8
// sequences of 1024; grouped-query attention (32 query heads over 8 KV heads).
// CUDA time comes from CUDA events.
// --io DIR: instead of random inputs, read DIR/{q,k,v,dout}.bin (float32, one
// sequence, [T, H, D] and [T, Hkv, D]), run forward and backward once in the
// chosen dtype, and write DIR/{out,lse,dq,dk,dv}.bin as float32 (what
// bench/gpu_attention.py compares with PyTorch and a float64 reference).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vp/attention.h"
#include "vp/cpu_features.h"
#include "vp/cuda.h"
#include "vp/gemm.h"
#include "vp/thread_pool.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class F>
double median_seconds(int reps, F&& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    double t0 = now();
    f();
    t.push_back(now() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double sgemm_gflops(int threads) {
  const int n = 1024;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  vp::GemmArgs g;
  g.m = g.n = g.k = n;
  g.a = a.data();
  g.b = b.data();
  g.c = c.data();
  g.lda = g.ldb = g.ldc = n;
  g.threads = threads;
  double s = median_seconds(7, [&] { (void)vp::sgemm(g); });
  return 2.0 * n * n * n / s / 1e9;
}

bool read_floats(const std::string& path, std::vector<float>& v) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  return static_cast<size_t>(f.gcount()) == v.size() * sizeof(float);
}

bool write_floats(const std::string& path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  return static_cast<bool>(f);
}

uint16_t to_half_bits(float x, vp::DType dt) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (dt == vp::DType::kBFloat16) return static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
  // float16 (inputs here are small and normal)
  uint32_t sign = (u >> 16) & 0x8000;
  int e = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
  uint32_t m = u & 0x7fffff;
  if (e <= 0) return static_cast<uint16_t>(sign);
  uint32_t h = sign | (static_cast<uint32_t>(e) << 10) | (m >> 13);
  if ((m & 0x1fff) > 0x1000 || ((m & 0x1fff) == 0x1000 && (h & 1))) ++h;
  return static_cast<uint16_t>(h);
}


// ---- --suite: the cases of bench/gpu.sh ----------------------------------------------

struct SuiteCase {
  std::string kind;  // "dense", "varlen", "gqa"
  int64_t batch, len, heads, kv_heads, dim;
  bool causal;
};

int run_suite(int argc, char** argv) {
  const vpbench::Args args = vpbench::parse_args(argc, argv);
  if (!vpbench::can_run("attention", args)) return 0;
  std::vector<SuiteCase> cases;
  if (args.cuda()) {
    const std::vector<int64_t> dims = args.full ? std::vector<int64_t>{64, 128} : std::vector<int64_t>{128};
    const std::vector<int64_t> lens = args.quick ? std::vector<int64_t>{1024, 4096} : std::vector<int64_t>{1024, 4096, 8192};
    for (int64_t d : dims)
      for (int64_t t : lens)
        for (bool c : {false, true}) cases.push_back({"dense", 1, t, 2048 / d, 2048 / d, d, c});
    cases.push_back({"varlen", 8, 1024, 16, 16, 128, true});
    cases.push_back({"gqa", 1, 4096, 32, 8, 128, true});
  } else {
    for (bool c : {false, true}) cases.push_back({"dense", 1, 256, 8, 8, 64, c});
    cases.push_back({"varlen", 4, 128, 8, 8, 64, true});
    cases.push_back({"gqa", 1, 256, 8, 2, 64, true});
  }
  int failures = 0;
  uint64_t stream = 1;
  for (const SuiteCase& c : cases) {
    const int64_t T = c.batch * c.len, H = c.heads, Hkv = c.kv_heads, D = c.dim;
    std::string name = c.kind == "dense"    ? "T=" + std::to_string(c.len)
                       : c.kind == "varlen" ? "varlen " + std::to_string(c.batch) + "x" + std::to_string(c.len)
                                            : "gqa T=" + std::to_string(c.len);
    name += " H=" + std::to_string(H) + (Hkv != H ? "/" + std::to_string(Hkv) : "") + " D=" + std::to_string(D) +
            (c.causal ? " causal" : "");
    vpbench::Buffers buf("attention", args);
    const vp::TensorView q = buf.floats(vpbench::normal(T * H * D, stream++), {T, H, D});
    const vp::TensorView k = buf.floats(vpbench::normal(T * Hkv * D, stream++), {T, Hkv, D});
    const vp::TensorView v = buf.floats(vpbench::normal(T * Hkv * D, stream++), {T, Hkv, D});
    const vp::TensorView dout = buf.floats(vpbench::normal(T * H * D, stream++), {T, H, D});
    const vp::TensorView out = buf.empty({T, H, D}), dq = buf.empty({T, H, D});
    const vp::TensorView dk = buf.empty({T, Hkv, D}), dv = buf.empty({T, Hkv, D});
    const vp::TensorView lse = buf.empty({H, T}, vp::DType::kFloat32);
    std::vector<int32_t> cu(static_cast<size_t>(c.batch) + 1);
    for (int64_t b = 0; b <= c.batch; ++b) cu[b] = static_cast<int32_t>(b * c.len);
    vp::AttentionOptions o;
    o.causal = c.causal;
    if (c.batch > 1) {
      o.cu_seqlens_q = o.cu_seqlens_k = cu.data();
      o.batch = c.batch;
    }
    // FlashAttention's count: 4·Tq·Tk·H·D forward per sequence, half when causal; backward 2.5×.
    const double fwd_flops = 4.0 * c.batch * c.len * c.len * H * D * (c.causal ? 0.5 : 1.0);
    vp::Status st;
    for (const bool backward : {false, true}) {
      const vpbench::Timing t = vpbench::time_on(args, [&] {
        st = vp::attention(q, k, v, o, out, lse);
        if (st.ok() && backward) st = vp::attention_backward(dout, q, k, v, out, lse, o, dq, dk, dv);
      });
      const std::string cas = name + (backward ? " fwd+bwd" : " fwd");
      if (!st.ok()) {
        vpbench::error_line("attention", cas, args, st.message());
        ++failures;
        break;
      }
      const double flops = fwd_flops * (backward ? 3.5 : 1.0);
      char extra[320];
      std::snprintf(extra, sizeof extra,
                    "\"kind\":\"%s\",\"B\":%lld,\"T\":%lld,\"H\":%lld,\"Hkv\":%lld,\"D\":%lld,\"causal\":%s,"
                    "\"dir\":\"%s\",\"flops\":%.6g,\"tflops\":%.3f,%s",
                    c.kind.c_str(), static_cast<long long>(c.batch), static_cast<long long>(c.len),
                    static_cast<long long>(H), static_cast<long long>(Hkv), static_cast<long long>(D),
                    c.causal ? "true" : "false", backward ? "fwd+bwd" : "fwd", flops,
                    flops / (t.median_ms * 1e9), vpbench::machine_json(args).c_str());
      vpbench::emit("attention", cas, args, t, extra);
    }
  }
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--suite") return run_suite(argc, argv);
  std::string device = "cpu", dtype_s = "float32", io_dir;
  int64_t T = 1024, H = 8, Hkv = -1, D = 64;
  int causal = 0, reps = 5, threads = 0, backward = 1;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--device") device = next();
    else if (a == "--dtype") dtype_s = next();
    else if (a == "--T") T = std::atoll(next().c_str());
    else if (a == "--H") H = std::atoll(next().c_str());
    else if (a == "--Hkv") Hkv = std::atoll(next().c_str());
    else if (a == "--D") D = std::atoll(next().c_str());
    else if (a == "--causal") causal = std::atoi(next().c_str());
    else if (a == "--reps") reps = std::atoi(next().c_str());
    else if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--backward") backward = std::atoi(next().c_str());
    else if (a == "--json") json = true;
    else if (a == "--io") io_dir = next();
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (Hkv < 0) Hkv = H;
  if (threads > 0) vp::set_num_threads(threads);
  const vp::DType dt = dtype_s == "bfloat16" ? vp::DType::kBFloat16
                       : dtype_s == "float16" ? vp::DType::kFloat16
                                              : vp::DType::kFloat32;
  const bool cuda = device == "cuda";
  if (cuda && !vp::cuda::available()) {
    std::printf("{\"skipped\": true, \"reason\": \"%s\"}\n", vp::cuda::unavailable_reason().c_str());
    return 0;
  }
  const size_t nq = T * H * D, nk = T * Hkv * D;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> hq(nq), hk(nk), hv(nk), hdo(nq);
  for (auto* v : {&hq, &hk, &hv, &hdo})
    for (auto& x : *v) x = nd(rng);
  if (!io_dir.empty()) {
    const char* names[] = {"q", "k", "v", "dout"};
    std::vector<float>* bufs[] = {&hq, &hk, &hv, &hdo};
    for (int i = 0; i < 4; ++i)
      if (!read_floats(io_dir + "/" + names[i] + ".bin", *bufs[i])) {
        std::fprintf(stderr, "cannot read %s/%s.bin (%zu floats)\n", io_dir.c_str(), names[i], bufs[i]->size());
        return 1;
      }
  }

  const size_t es = vp::dtype_size(dt);
  std::vector<void*> dev;
  auto upload = [&](const std::vector<float>& h) -> void* {
    if (!cuda) return const_cast<float*>(h.data());
    std::vector<uint16_t> bits;
    const void* src = h.data();
    if (dt != vp::DType::kFloat32) {
      bits.resize(h.size());
      for (size_t i = 0; i < h.size(); ++i) bits[i] = to_half_bits(h[i], dt);
      src = bits.data();
    }
    void* p = nullptr;
    if (!vp::cuda::malloc_device(&p, h.size() * es).ok() || !vp::cuda::copy_to_device(p, src, h.size() * es).ok()) {
      std::fprintf(stderr, "CUDA allocation failed\n");
      std::exit(1);
    }
    dev.push_back(p);
    return p;
  };
  auto alloc = [&](size_t n, size_t esz) -> void* {
    if (!cuda) return std::calloc(n, esz);
    void* p = nullptr;
    if (!vp::cuda::malloc_device(&p, n * esz).ok()) std::exit(1);
    dev.push_back(p);
    return p;
  };
  const vp::Device dv = cuda ? vp::Device::kCUDA : vp::Device::kCPU;
  vp::TensorView q(upload(hq), {T, H, D}, dt, dv), k(upload(hk), {T, Hkv, D}, dt, dv),
      v(upload(hv), {T, Hkv, D}, dt, dv), dout(upload(hdo), {T, H, D}, dt, dv);
  vp::TensorView out(alloc(nq, es), {T, H, D}, dt, dv), lse(alloc(H * T, 4), {H, T}, vp::DType::kFloat32, dv);
  vp::TensorView dq(alloc(nq, es), {T, H, D}, dt, dv), dk(alloc(nk, es), {T, Hkv, D}, dt, dv),
      dvv(alloc(nk, es), {T, Hkv, D}, dt, dv);
  vp::AttentionOptions o;
  o.causal = causal != 0;
  vp::Status st;
  auto sync = [&] {
    if (cuda) (void)vp::cuda::synchronize();
  };
  if (!io_dir.empty()) {
    st = vp::attention(q, k, v, o, out, lse);
    if (st.ok()) st = vp::attention_backward(dout, q, k, v, out, lse, o, dq, dk, dvv);
    sync();
    if (!st.ok()) {
      std::fprintf(stderr, "attention failed: %s\n", st.message().c_str());
      return 1;
    }
    auto fetch = [&](const vp::TensorView& t) {
      std::vector<float> h(t.numel());
      if (!cuda) {
        std::memcpy(h.data(), t.data, h.size() * 4);
      } else if (t.dtype == vp::DType::kFloat32) {
        (void)vp::cuda::copy_to_host(h.data(), t.data, h.size() * 4);
      } else {
        void* f = nullptr;
        vp::TensorView tf = t;
        if (!vp::cuda::malloc_device(&f, h.size() * 4).ok()) std::exit(1);
        tf.data = f;
        tf.dtype = vp::DType::kFloat32;
        (void)vp::cuda::convert(t, tf);
        (void)vp::cuda::copy_to_host(h.data(), f, h.size() * 4);
        vp::cuda::free_device(f);
      }
      return h;
    };
    const char* names[] = {"out", "lse", "dq", "dk", "dv"};
    const vp::TensorView* ts[] = {&out, &lse, &dq, &dk, &dvv};
    for (int i = 0; i < 5; ++i)
      if (!write_floats(io_dir + "/" + names[i] + ".bin", fetch(*ts[i]))) return 1;
    std::printf("{\"io\": \"%s\", \"ok\": true}\n", io_dir.c_str());
    return 0;
  }
  const double fwd_flops = 4.0 * T * T * H * D * (causal ? 0.5 : 1.0);
  const double tf = median_seconds(reps, [&] {
    st = vp::attention(q, k, v, o, out, lse);
    sync();
  });
  if (!st.ok()) {
    std::fprintf(stderr, "attention failed: %s\n", st.message().c_str());
    return 1;
  }
  double tb = 0.0;
  if (backward) {
    tb = median_seconds(reps, [&] {
      st = vp::attention_backward(dout, q, k, v, out, lse, o, dq, dk, dvv);
      sync();
    });
    if (!st.ok()) {
      std::fprintf(stderr, "attention_backward failed: %s\n", st.message().c_str());
      return 1;
    }
  }
  const double gf = fwd_flops / tf / 1e9, gb = backward ? 2.5 * fwd_flops / tb / 1e9 : 0.0;
  const double gfb = backward ? 3.5 * fwd_flops / (tf + tb) / 1e9 : 0.0;
  const std::string machine = cuda ? vp::cuda::device_info().name : std::string("cpu ") + vp::isa_name(vp::active_isa()) +
                                                                        " x" + std::to_string(vp::num_threads());
  const double sg = cuda ? 0.0 : sgemm_gflops(threads);
  if (json) {
    std::printf("{\"op\": \"attention\", \"device\": \"%s\", \"dtype\": \"%s\", \"T\": %lld, \"H\": %lld, \"Hkv\": %lld, "
                "\"D\": %lld, \"causal\": %s, \"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"fwd_gflops\": %.2f, "
                "\"bwd_gflops\": %.2f, \"fwdbwd_gflops\": %.2f, \"sgemm_gflops\": %.2f, \"machine\": \"%s\"}\n",
                device.c_str(), dtype_s.c_str(), (long long)T, (long long)H, (long long)Hkv, (long long)D,
                causal ? "true" : "false", tf * 1e3, tb * 1e3, gf, gb, gfb, sg, machine.c_str());
  } else {
    std::printf("attention %s %s T=%lld H=%lld Hkv=%lld D=%lld causal=%d: fwd %.3f ms %.1f GFLOP/s", device.c_str(),
                dtype_s.c_str(), (long long)T, (long long)H, (long long)Hkv, (long long)D, causal, tf * 1e3, gf);
    if (backward) std::printf(" | bwd %.3f ms %.1f GFLOP/s | fwd+bwd %.1f GFLOP/s", tb * 1e3, gb, gfb);
    if (!cuda) std::printf(" | sgemm %.1f GFLOP/s (fwd %.0f%%)", sg, 100.0 * gf / sg);
    std::printf(" [%s]\n", machine.c_str());
  }
  for (void* p : dev) vp::cuda::free_device(p);
  if (!cuda)
    for (auto* t : {&out, &lse, &dq, &dk, &dvv}) std::free(t->data);
  return 0;
}
