// CPUID-based ISA selection. __builtin_cpu_supports reads CPUID and checks that
// the OS saves the wide registers (XGETBV), so a "yes" here is safe to act on.
#include "vp/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace vp {
namespace {

std::atomic<int> g_active{-1};
std::string g_reason;
std::mutex g_mu;

bool cpu_has(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::kAvx512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
                              __builtin_cpu_supports("fma");
    case Isa::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kGeneric: return true;
  }
  return false;
#else
  return isa == Isa::kGeneric;
#endif
}

void init_once() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_active.load() >= 0) return;
  Isa best = detect_isa();
  Isa chosen = best;
  std::string reason = std::string("cpuid: best supported path is ") + isa_name(best);
  if (const char* env = std::getenv("VP_ISA")) {
    Isa want = best;
    bool known = true;
    if (!std::strcmp(env, "generic")) want = Isa::kGeneric;
    else if (!std::strcmp(env, "avx2")) want = Isa::kAvx2;
    else if (!std::strcmp(env, "avx512")) want = Isa::kAvx512;
    else known = false;
    if (!known) {
      reason = std::string("VP_ISA=") + env + " is not one of generic|avx2|avx512; using " + isa_name(best);
    } else if (cpu_has(want)) {
      chosen = want;
      reason = std::string("VP_ISA=") + env;
    } else {
      reason = std::string("VP_ISA=") + env + " not supported by this CPU; using " + isa_name(best);
    }
  }
  g_reason = reason;
  g_active.store(static_cast<int>(chosen));
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kGeneric: return "generic";
  }
  return "generic";
}

Isa detect_isa() {
  if (cpu_has(Isa::kAvx512)) return Isa::kAvx512;
  if (cpu_has(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kGeneric;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_acquire);
  if (v < 0) {
    init_once();
    v = g_active.load();
  }
  return static_cast<Isa>(v);
}

bool set_active_isa(Isa isa) {
  active_isa();  // make sure init ran
  if (!cpu_has(isa)) return false;
  std::lock_guard<std::mutex> lk(g_mu);
  g_active.store(static_cast<int>(isa));
  g_reason = std::string("set at run time: ") + isa_name(isa);
  return true;
}

bool has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool cpu = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0 && __builtin_cpu_supports("avx512bw") != 0 &&
           __builtin_cpu_supports("avx512vl") != 0;
  }();
  return cpu && active_isa() == Isa::kAvx512;
#else
  return false;
#endif
}

std::string isa_reason() {
  active_isa();
  std::lock_guard<std::mutex> lk(g_mu);
  return g_reason;
}

}  // namespace vp
