// adviseHugePages(typedArray): asks Linux to back a large, freshly allocated host
// buffer with 2 MB transparent huge pages (madvise MADV_HUGEPAGE on the 2 MB-aligned
// interior of the array's bytes), so the first write into it takes one page fault
// per 2 MB instead of one per 4 KB. lib/tensor.ts calls it for every new CPU tensor
// of 4 MB or more, before any kernel writes the output.
//
// Why: V8 allocates a large ArrayBuffer with calloc, which maps fresh untouched pages;
// the op that fills it then pays ~8k faults per 32 MB. On the 2-core KVM machine of
// docs/benchmarks.md one 32 MB first touch took 26-36 ms with 4 KB pages and 4-10 ms
// with huge pages (memset of calloc'd memory, median of 5), which is most of the
// whole-stack time of a memory-bound op such as the cross-entropy backward.
// Cost: one madvise system call; a no-op off Linux, under 4 MB, or when the kernel's
// THP mode is "never" (madvise then fails and the failure is ignored: the pages are
// merely small). Memory use is unchanged: the pages are touched by the op anyway.
#include "addon.h"

#include <cstdint>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace vpaddon {
namespace {

constexpr uintptr_t kHuge = uintptr_t{2} << 20;

Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(env, "adviseHugePages: expected a typed array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bool advised = false;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const Napi::TypedArray a = info[0].As<Napi::TypedArray>();
  const uintptr_t p = reinterpret_cast<uintptr_t>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  const uintptr_t begin = (p + kHuge - 1) & ~(kHuge - 1), end = (p + a.ByteLength()) & ~(kHuge - 1);
  if (a.ByteLength() >= 2 * kHuge && end > begin)
    advised = madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0;
#endif
  return Napi::Boolean::New(env, advised);
}

}  // namespace

void InitHostMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages));
}

}  // namespace vpaddon
