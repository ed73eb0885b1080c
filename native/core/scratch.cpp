// ScratchLease (scratch.h): one kept block per slot in thread-local storage;
// a lease takes it out, grows it when too small, and gives it back (or frees it
// when over kScratchKeepBytes, or when the slot was refilled by a nested lease).
#include "scratch.h"

#include <cstdint>
#include <cstdlib>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace vp {
namespace {

constexpr size_t kHuge = size_t{2} << 20;

struct Block {
  void* ptr = nullptr;
  size_t cap = 0;
};

struct ThreadBlocks {
  Block slot[static_cast<int>(ScratchSlot::kCount)];
  ~ThreadBlocks() {
    for (Block& b : slot) std::free(b.ptr);
  }
};

ThreadBlocks& blocks() {
  thread_local ThreadBlocks t;
  return t;
}

void* allocate(size_t bytes, size_t* cap) {
  const bool huge = bytes >= 2 * kHuge;
  const size_t align = huge ? kHuge : 64;
  const size_t rounded = ((bytes ? bytes : 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (p && huge) madvise(p, rounded, MADV_HUGEPAGE);  // a failure only leaves small pages
#endif
  *cap = p ? rounded : 0;
  return p;
}

}  // namespace

ScratchLease::ScratchLease(ScratchSlot slot, size_t bytes) : slot_(slot) {
  Block& b = blocks().slot[static_cast<int>(slot)];
  if (b.ptr && b.cap >= bytes) {
    ptr_ = b.ptr;
    cap_ = b.cap;
    b = Block{};
    return;
  }
  std::free(b.ptr);  // too small: replaced by a larger one
  b = Block{};
  ptr_ = allocate(bytes, &cap_);
}

ScratchLease::~ScratchLease() {
  if (!ptr_) return;
  Block& b = blocks().slot[static_cast<int>(slot_)];
  if (cap_ <= kScratchKeepBytes && !b.ptr) {
    b.ptr = ptr_;
    b.cap = cap_;
  } else {
    std::free(ptr_);
  }
}

}  // namespace vp
